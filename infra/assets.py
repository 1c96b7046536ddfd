"""Stage the Lambda code assets and the layer that ``make synth`` deploys.

Each function's asset holds only its own folder at the root (``api/handler.py`` ...), so the
handler string is ``api.handler.handler`` and modules import as ``api.routes.x``. Tests,
byte code and virtual environments never ship. Run as ``python -m infra.assets`` to stage
every function and build the layer (``layers/build.py``, cached).

The CDK app reads the staged folders; :func:`function_code_dir` refuses stale or missing
ones so a plain ``cdk deploy`` cannot ship yesterday's handler by accident.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_SOURCE = ROOT / "functions"
DEFAULT_OUT = ROOT / "build" / "functions"
FUNCTIONS = ("api", "authorizer", "ingest", "aggregate", "aggregate_piece", "sweeper")
EXCLUDED = (
    "tests",
    "test",
    "test_*.py",
    "*_test.py",
    "conftest.py",
    "__pycache__",
    "*.pyc",
    ".venv",
    "venv",
    "node_modules",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
)
STAMP = ".staged"
FMA_SOURCE = ROOT / "shared" / "fma"
LAYER_FMA_STAMP = ".fma.stamp"  # written by layers/build.py after copying shared/fma
LAYER_EXCLUDES = (".requirements.sha256", LAYER_FMA_STAMP)


def stage_function(name: str, out: Path = DEFAULT_OUT, source: Path = FUNCTIONS_SOURCE) -> Path:
    """Copy ``functions/<name>`` to ``<out>/<name>/<name>`` and return the asset root."""
    src = source / name
    if not src.is_dir():
        raise FileNotFoundError(f"function folder {src} is missing")
    asset_root = out / name
    if asset_root.exists():
        shutil.rmtree(asset_root)
    shutil.copytree(src, asset_root / name, ignore=shutil.ignore_patterns(*EXCLUDED))
    (asset_root / name / STAMP).unlink(missing_ok=True)
    return asset_root


def stage_functions(out: Path = DEFAULT_OUT, source: Path = FUNCTIONS_SOURCE) -> dict[str, Path]:
    """Stage every function; return ``{name: asset root}``."""
    staged = {name: stage_function(name, out, source) for name in FUNCTIONS}
    (out / STAMP).write_text("\n".join(FUNCTIONS) + "\n")
    return staged


def _newest_mtime(tree: Path) -> float:
    times = [
        p.stat().st_mtime
        for p in tree.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    return max(times, default=0.0)


def function_code_dir(name: str, out: Path, source: Path = FUNCTIONS_SOURCE) -> Path:
    """The staged asset root of ``name``, checked to be present and newer than its source."""
    asset_root = out / name
    stamp = out / STAMP
    hint = "run `make synth` (or `python -m infra.assets`) first"
    if not (asset_root / name).is_dir() or not stamp.exists():
        raise FileNotFoundError(f"no staged code for function {name!r} in {out}: {hint}")
    if (source / name).is_dir() and _newest_mtime(source / name) > stamp.stat().st_mtime:
        raise RuntimeError(f"staged code for function {name!r} is older than its source: {hint}")
    return asset_root


def layer_code_dir(layer_dir: Path, fma_source: Path = FMA_SOURCE) -> Path:
    """The built layer folder, checked to hold ``python/fma`` newer than ``shared/fma``."""
    hint = "run `make layer` (or `make synth`) first"
    if not (layer_dir / "python" / "fma").is_dir():
        raise FileNotFoundError(f"no layer in {layer_dir}: {hint}")
    stamp = layer_dir / LAYER_FMA_STAMP
    if stamp.exists() and _newest_mtime(fma_source) > stamp.stat().st_mtime:
        raise RuntimeError(f"the layer's copy of fma is older than shared/fma: {hint}")
    return layer_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stage Lambda code assets and the layer.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-layer", action="store_true", help="stage the functions only")
    args = parser.parse_args(argv)
    for name, path in stage_functions(args.out).items():
        print(f"function {name}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if not args.no_layer:
        subprocess.run([sys.executable, str(ROOT / "layers" / "build.py")], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
