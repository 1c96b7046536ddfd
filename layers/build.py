#!/usr/bin/env python3
"""Build the FMA Lambda layer into ``layers/build/python`` without Docker.

The layer holds the ``fma`` package (copied from ``shared/fma``) and its runtime
dependencies, installed from ``layers/requirements.txt`` as manylinux aarch64 CPython 3.12
wheels with pip's ``--platform``/``--only-binary``, so the result runs on Lambda's arm64
Python 3.12 runtime whatever machine builds it.

Local mode, the demo and the embedded connectors (``fma.local``, ``fma.adapters.memory``,
``fma.adapters.sqlite_fs``) are left out: what ships is what Lambda runs.

The pip step is cached: it reruns only when ``requirements.txt`` or the target platform
changes (a digest is kept in ``layers/build/.requirements.sha256``). The ``fma`` copy is
refreshed on every run because it is cheap. Test folders, byte code and console scripts are
pruned, and the unzipped size is checked against Lambda's 250 MB limit.

Usage: ``python layers/build.py [--out DIR] [--force]``
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "layers" / "requirements.txt"
FMA_SOURCE = ROOT / "shared" / "fma"
DEFAULT_OUT = ROOT / "layers" / "build"
FMA_STAMP = ".fma.stamp"

# Lambda's python3.12 runtime is Amazon Linux 2023 (glibc 2.34): manylinux_2_28 wheels run
# there, and recent numpy publishes aarch64 wheels only for that tag.
PLATFORM_ARGS = (
    "--platform",
    "manylinux2014_aarch64",
    "--platform",
    "manylinux_2_28_aarch64",
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
)
# Directory names removed anywhere in the layer: tests ship nowhere, byte code is rebuilt.
PRUNED_DIRS = frozenset({"tests", "test", "__pycache__"})
PRUNED_SUFFIXES = (".pyc", ".pyo")
PRUNED_FILE_SUFFIXES = ("_test.py",)  # test modules outside test folders (absl, dm-tree ...)
# Parts of fma that Lambda never runs: local mode (gateway, demo, digits task) and the
# embedded connectors. `numpy/testing` stays: scipy (its array-API shim) and dp-accounting
# import it at start, so the aggregate function needs it (tests/unit/test_layer.py shows it).
FMA_EXCLUDED = ("local", "adapters/memory", "adapters/sqlite_fs")
# Lambda allows 250 MB unzipped for function code plus all layers; leave room for handlers.
MAX_LAYER_BYTES = 240 * 1024 * 1024


def requirements_digest() -> str:
    """Digest of everything that decides what pip installs."""
    text = REQUIREMENTS.read_text() + "\n".join(PLATFORM_ARGS)
    return hashlib.sha256(text.encode()).hexdigest()


def install_dependencies(site: Path) -> None:
    """Install the pinned wheels for Lambda's platform into ``site``."""
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-warn-conflicts",  # pip would compare against the build venv, not the layer
        *PLATFORM_ARGS,
        "--target",
        str(site),
        "-r",
        str(REQUIREMENTS),
    ]
    subprocess.run(cmd, check=True)
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with a host shebang


def prune(tree: Path) -> None:
    """Remove test folders and byte code below ``tree``."""
    for path in sorted(tree.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in PRUNED_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and (path.suffix in PRUNED_SUFFIXES or path.name.endswith(PRUNED_FILE_SUFFIXES)):
            path.unlink()


def copy_fma(site: Path) -> None:
    """Replace the layer's copy of the ``fma`` package with the working tree's."""
    target = site / "fma"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(FMA_SOURCE, target, ignore=shutil.ignore_patterns(*PRUNED_DIRS, "*.pyc", "*.egg-info"))
    for rel in FMA_EXCLUDED:
        shutil.rmtree(target / rel, ignore_errors=True)


def tree_size(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())


def build(out: Path = DEFAULT_OUT, force: bool = False) -> Path:
    """Build (or refresh) the layer below ``out`` and return ``out``."""
    site = out / "python"
    stamp = out / ".requirements.sha256"
    digest = requirements_digest()
    if force or not stamp.exists() or stamp.read_text().strip() != digest:
        print(f"layer: installing {REQUIREMENTS.name} for linux/arm64 cp312 ...", flush=True)
        stamp.unlink(missing_ok=True)
        install_dependencies(site)
        prune(site)
        stamp.write_text(digest + "\n")
    else:
        print("layer: dependencies up to date (cached)", flush=True)
    copy_fma(site)
    (out / FMA_STAMP).write_text("shared/fma copied\n")  # infra.assets checks freshness
    size = tree_size(site)
    if size > MAX_LAYER_BYTES:
        raise SystemExit(f"layer is {size / 2**20:.0f} MiB unzipped, over the Lambda limit")
    print(f"layer: {site} ({size / 2**20:.1f} MiB unzipped)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="layer output folder")
    parser.add_argument("--force", action="store_true", help="reinstall the dependencies")
    args = parser.parse_args(argv)
    build(args.out, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
