"""Each function's environment is exactly what its code reads (no drift, nothing unused).

The chain of proof: (1) no module a function ships reads the environment except the settings
module (and the strategy catalog, for FMA_STRATEGY_MODULES); (2) each handler builds its
adapters from its own functions/<fn>/settings.py; (3) loading those settings reads exactly the
declared names (plus what the Lambda runtime or local mode provides); (4) a limit a function did
not declare raises when read, so the functional suite catches a code path that needs one; and
(5) the synthesized template sets exactly the declared names on each function.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
from conftest import ROOT, STRATEGY_MODULES, functions_by_handler

FUNCTIONS = ("api", "authorizer", "ingest", "aggregate", "aggregate_piece", "sweeper")
ENV_READERS = {"shared/fma/adapters/settings.py", "shared/fma/domain/strategy_catalog.py"}
# Local mode, the CLI and the connectors only local mode and unit tests use (DESIGN section 8).
NOT_SHIPPED_TO_LAMBDA = ("shared/fma/local/", "shared/fma/cli.py", "shared/fma/adapters/sqlite_fs/",
                         "shared/fma/adapters/memory/", "shared/fma/history_cli.py")


@pytest.fixture(scope="module")
def declared() -> dict[str, object]:
    for extra in (ROOT / "functions", ROOT / "shared"):
        if str(extra) not in sys.path:
            sys.path.insert(0, str(extra))
    return {fn: importlib.import_module(f"{fn}.settings").SETTINGS for fn in FUNCTIONS}


def _reads_environment(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
            a.name in ("environ", "getenv") for a in node.names
        ):
            return True
    return False


def test_only_the_settings_module_reads_the_environment():
    readers = set()
    for path in [*ROOT.glob("functions/**/*.py"), *ROOT.glob("shared/fma/**/*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(NOT_SHIPPED_TO_LAMBDA):
            continue
        if _reads_environment(ast.parse(path.read_text())):
            readers.add(rel)
    assert readers == ENV_READERS


def test_each_handler_builds_from_its_own_settings_module():
    for fn in FUNCTIONS:
        sources = "\n".join(p.read_text() for p in (ROOT / "functions" / fn).rglob("*.py"))
        assert f"from {fn}.settings import load_settings" in sources, fn
        assert "Settings.from_env" not in sources, fn


def test_loading_settings_reads_exactly_the_declared_names(declared):
    from fma.adapters import settings as s

    class Recording(dict):
        def __init__(self):
            super().__init__()
            self.read: set[str] = set()

        def get(self, key, default=None):
            self.read.add(key)
            return {s.TABLE_NAME: "t", s.BUCKET_NAME: "b"}.get(key, default)

    for fn, spec in declared.items():
        env = Recording()
        spec.load(env)
        app_names = {n for n in env.read if n not in s.RUNTIME and n not in s.LOCAL_ONLY}
        # powertools and the strategy catalog read their names themselves
        library = {*s.LOGGER_AND_METRICS, s.STRATEGY_MODULES}
        assert app_names == set(spec.reads) - library, fn


def test_an_undeclared_limit_raises_instead_of_defaulting(declared):
    from fma.adapters.settings import SettingsError

    limits = declared["authorizer"].load({"FMA_TABLE_NAME": "t"}).limits
    with pytest.raises(SettingsError, match="FMA_LEASE_SECONDS"):
        _ = limits.lease_seconds
    assert declared["ingest"].load({"FMA_TABLE_NAME": "t", "FMA_BUCKET_NAME": "b",
                                    "FMA_LEASE_SECONDS": "960"}).limits.lease_seconds == 960


def test_powertools_names_follow_what_each_handler_uses(declared):
    from fma.adapters import settings as s

    for fn, spec in declared.items():
        source = (ROOT / "functions" / fn / "handler.py").read_text()
        uses_metrics = "Metrics()" in source
        assert (s.POWERTOOLS_METRICS_NAMESPACE in spec.reads) == uses_metrics, fn
        assert set(s.LOGGER) <= set(spec.reads), fn


def test_template_sets_exactly_what_each_function_reads(synth, declared):
    from fma.adapters.settings import CONFIGURED_ONLY

    for stage, template in (("dev", synth.dev), ("prod", synth.prod)):
        for fn, resource in functions_by_handler(template).items():
            env = set(resource["Properties"]["Environment"]["Variables"])
            reads = set(declared[fn].reads)
            configured = {"FMA_STRATEGY_MODULES"} & reads if stage == "prod" else set()
            assert env == (reads - CONFIGURED_ONLY) | configured, (stage, fn, env ^ reads)


def test_lease_and_grace_reach_every_function_that_uses_them(synth):
    fns = functions_by_handler(synth.dev)
    for fn in ("ingest", "sweeper", "aggregate"):
        assert fns[fn]["Properties"]["Environment"]["Variables"]["FMA_LEASE_SECONDS"] == "960", fn
    for fn in ("api", "ingest", "sweeper"):
        assert fns[fn]["Properties"]["Environment"]["Variables"]["FMA_RECONCILE_GRACE_SECONDS"] == "300", fn
    prod = functions_by_handler(synth.prod)
    assert prod["aggregate"]["Properties"]["Environment"]["Variables"]["FMA_STRATEGY_MODULES"] == STRATEGY_MODULES


def test_staged_function_code_carries_its_settings_module(synth):
    for fn in FUNCTIONS:
        assert (Path(synth.functions_dir) / fn / fn / "settings.py").is_file(), fn
