"""The dependency rules of STYLE.md, enforced by reading imports (and one cold import)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FMA = ROOT / "shared" / "fma"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_domain_imports_no_aws_sdks():
    for path in (FMA / "domain").rglob("*.py"):
        bad = top(imports_of(path)) & {"boto3", "botocore", "pynamodb", "aws_lambda_powertools"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_services_talk_to_aws_only_through_ports():
    for path in (FMA / "services").rglob("*.py"):
        bad = top(imports_of(path)) & {"boto3", "botocore", "pynamodb"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
        assert not any(n.startswith("fma.adapters") for n in imports_of(path)), path


def test_infra_and_clients_import_neither_functions_nor_fma():
    for folder in (ROOT / "infra", ROOT / "clients"):
        for path in folder.rglob("*.py"):
            bad = top(imports_of(path)) & {"fma", "api", "ingest", "aggregate", "sweeper", "authorizer"}
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_api_and_authorizer_handlers_do_not_import_numpy():
    """Cold starts matter: the API function must not pay for numpy."""
    code = ("import sys; sys.path[:0] = [{fn!r}, {shared!r}]; import api.handler, authorizer.handler; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'safetensors', 'scipy')); "
            "print(bad); sys.exit(1 if bad else 0)").format(fn=str(ROOT / "functions"), shared=str(ROOT / "shared"))
    env = {"FMA_TABLE_NAME": "t", "FMA_BUCKET_NAME": "b", "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_handlers_stay_thin():
    for path in (ROOT / "functions").rglob("handler.py"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert len(lines) <= 80, f"{path.relative_to(ROOT)} has {len(lines)} lines"
