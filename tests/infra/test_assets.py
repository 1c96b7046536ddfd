"""Lambda code assets and the layer: what ships and what never does."""

from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path

import pytest
from conftest import ROOT

from infra.assets import FUNCTIONS, function_code_dir, stage_function, stage_functions

FORBIDDEN_PARTS = {"tests", "test", "__pycache__", ".venv", "node_modules"}


def _load_layer_builder():
    spec = importlib.util.spec_from_file_location("layer_build", ROOT / "layers" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(tree: Path) -> list[Path]:
    return [p.relative_to(tree) for p in tree.rglob("*") if p.is_file()]


@pytest.fixture
def noisy_source(tmp_path: Path) -> Path:
    """A functions/ tree with everything that must not ship next to what must."""
    src = tmp_path / "src"
    for rel in (
        "api/handler.py",
        "api/routes/experiments.py",
        "api/tests/test_api.py",
        "api/test_handler.py",
        "api/conftest.py",
        "api/__pycache__/handler.cpython.pyc",
        "api/.venv/lib/numpy/__init__.py",
        "api/node_modules/x.js",
    ):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x")
    return src


def test_function_asset_holds_its_own_folder_and_no_test_or_cache(tmp_path, noisy_source):
    root = stage_function("api", tmp_path / "out", source=noisy_source)
    assert [p.name for p in root.iterdir()] == ["api"]
    assert sorted(map(str, _files(root))) == ["api/handler.py", "api/routes/experiments.py"]


def test_staged_assets_of_the_synth_hold_only_their_function(synth):
    for name in FUNCTIONS:
        root = synth.functions_dir / name
        assert [p.name for p in root.iterdir()] == [name]
        for rel in _files(root):
            assert not FORBIDDEN_PARTS & set(rel.parts), rel
            assert not re.match(r"(test_.*|.*_test|conftest)\.py$", rel.name), rel


def test_each_function_asset_has_its_handler(synth):
    missing = [n for n in FUNCTIONS if not (synth.functions_dir / n / n / "handler.py").exists()]
    assert missing == []


def test_api_asset_carries_no_numpy(synth):
    root = synth.functions_dir / "api"
    assert not [p for p in _files(root) if "numpy" in str(p).lower()]
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 1_000_000


def test_stale_or_missing_staging_is_refused(tmp_path, noisy_source):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="make synth"):
        function_code_dir("api", out, source=noisy_source)
    stage_functions_from(noisy_source, out)
    assert function_code_dir("api", out, source=noisy_source) == out / "api"
    later = time.time() + 5
    os.utime(noisy_source / "api" / "handler.py", (later, later))
    with pytest.raises(RuntimeError, match="older than its source"):
        function_code_dir("api", out, source=noisy_source)


def stage_functions_from(source: Path, out: Path) -> None:
    for name in FUNCTIONS:
        (source / name).mkdir(exist_ok=True)
    stage_functions(out, source)


def test_layer_prune_removes_tests_and_byte_code(tmp_path):
    builder = _load_layer_builder()
    for rel in (
        "numpy/_core/tests/test_x.py",
        "numpy/testing/__init__.py",
        "pkg/mod.py",
        "pkg/__pycache__/mod.cpython-312.pyc",
        "pkg/test/data.txt",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    builder.prune(tmp_path)
    assert sorted(map(str, _files(tmp_path))) == ["numpy/testing/__init__.py", "pkg/mod.py"]


def test_layer_requirements_pin_what_pyproject_pins():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        re.split(r"[=\[]", d)[0].lower(): d.split("==")[1]
        for d in project["dependencies"] + project["optional-dependencies"]["dp"]
    }
    pins = {}
    for line in (ROOT / "layers" / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"\[.*\]", "", name).lower()] = version.strip()
    for name, version in wanted.items():
        assert pins.get(name) == version, name
    assert all(
        "==" in line
        for line in (ROOT / "layers" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )


@pytest.mark.skipif(not (ROOT / "layers" / "build" / "python").is_dir(), reason="layer not built (make layer)")
def test_built_layer_has_fma_and_its_dependencies_but_no_tests():
    site = ROOT / "layers" / "build" / "python"
    for package in (
        "fma",
        "numpy",
        "safetensors",
        "pynamodb",
        "aws_lambda_powertools",
        "dp_accounting",
        "boto3",
    ):
        assert (site / package).is_dir(), package
    assert not [p for p in site.rglob("*") if p.is_dir() and p.name in FORBIDDEN_PARTS]
    assert list(site.glob("numpy/_core/_multiarray_umath.cpython-312-aarch64-linux-gnu.so"))


def test_layer_older_than_shared_fma_is_refused(tmp_path):
    from infra.assets import LAYER_FMA_STAMP, layer_code_dir

    source = tmp_path / "fma"
    source.mkdir()
    (source / "__init__.py").write_text("")
    layer = tmp_path / "layer"
    with pytest.raises(FileNotFoundError, match="make layer"):
        layer_code_dir(layer, source)
    (layer / "python" / "fma").mkdir(parents=True)
    (layer / LAYER_FMA_STAMP).write_text("")
    assert layer_code_dir(layer, source) == layer
    later = time.time() + 5
    os.utime(source / "__init__.py", (later, later))
    with pytest.raises(RuntimeError, match="older than shared/fma"):
        layer_code_dir(layer, source)
