"""What ships to Lambda is what Lambda runs: the layer's fma has no local mode, demo, digits
task or embedded connector, no test files, and every handler imports from it alone."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "build" / "python"
EXCLUDED = ("fma/local", "fma/adapters/memory", "fma/adapters/sqlite_fs")


def _builder():
    spec = importlib.util.spec_from_file_location("layer_build_h12", ROOT / "layers" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_fma(site: Path) -> None:
    assert (site / "fma" / "services" / "ports.py").is_file()
    assert (site / "fma" / "adapters" / "aws.py").is_file()
    for rel in EXCLUDED:
        assert not (site / rel).exists(), rel
    assert not list((site / "fma").rglob("digits.py")) and not list((site / "fma").rglob("demo*.py"))
    assert not [p for p in site.rglob("*_test.py")]


def test_layer_copy_of_fma_leaves_local_mode_and_embedded_connectors_out(tmp_path):
    builder = _builder()
    builder.copy_fma(tmp_path)
    _check_fma(tmp_path)


def test_prune_removes_test_modules_outside_test_folders(tmp_path):
    builder = _builder()
    for rel in ("absl/testing/absltest.py", "tree/tree_test.py", "numpy/testing/__init__.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    builder.prune(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.py")) == [
        "absl/testing/absltest.py", "numpy/testing/__init__.py"]


def test_every_handler_imports_from_the_layers_fma_alone(tmp_path):
    """The handlers' cold imports succeed with only the layer's copy of fma on the path."""
    _builder().copy_fma(tmp_path)
    code = ("import importlib, sys\n"
            "for name in ('api', 'authorizer', 'ingest', 'aggregate', 'sweeper'):\n"
            "    importlib.import_module(name + '.handler')\n"
            "import fma.services.aggregation, fma.domain.aggregation\n"
            "local = ('fma.local', 'fma.adapters.memory', 'fma.adapters.sqlite')\n"
            "bad = [m for m in sys.modules if m.startswith(local)]\n"
            "assert not bad, bad\n"
            "assert all(m.__file__.startswith(sys.argv[1]) for n, m in sys.modules.items()\n"
            "           if n.startswith('fma') and getattr(m, '__file__', None)), 'fma imported from elsewhere'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT / "functions")])
    env.update({"FMA_TABLE_NAME": "t", "FMA_BUCKET_NAME": "b", "AWS_DEFAULT_REGION": "us-east-1"})
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(not LAYER.is_dir(), reason="layer not built (make layer)")
def test_the_built_layer_ships_no_local_mode_and_no_tests():
    _check_fma(LAYER)
    assert not [p for p in LAYER.rglob("*") if p.is_dir() and p.name in ("tests", "test", "__pycache__")]
    assert (LAYER / "numpy" / "testing").is_dir()  # scipy and dp-accounting import it at start


def test_numpy_testing_is_runtime_code_of_the_aggregate_function():
    """Why the layer keeps numpy/testing (its tests/ folder is pruned): scipy's array-API shim
    runs `from numpy import *`, which imports numpy.testing, so without it neither the BLAS axpy
    of the streaming aggregation nor dp-accounting (scipy.special) imports."""
    code = ("import importlib.abc, sys\n"
            "class Refuse(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'numpy.testing' or name.startswith('numpy.testing.'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Refuse())\n"
            "import numpy\n"
            "for module in ('scipy.linalg.blas', 'dp_accounting'):\n"
            "    try:\n"
            "        __import__(module)\n"
            "    except ImportError:\n"
            "        print('needs numpy.testing:', module)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["needs numpy.testing: scipy.linalg.blas", "needs numpy.testing: dp_accounting"]
