"""Synthesize the FMA app once per test session: a dev and a prod stack, with cdk-nag.

The stacks use freshly staged function assets (from ``functions/``), a stub layer (the real
one is built by ``make synth``; its contents are checked in test_assets.py when present)
and a small ``web/`` tree, all in a temporary folder. Every test here is marked ``infra``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ALARM_EMAIL = "ops@example.com"
STRATEGY_MODULES = "my_pkg.fma_norm_bounded"
# prod sets a non-default ingest concurrency so the tests can tell config from default
PROD_INGEST_MAX_CONCURRENCY = 200


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.infra)


@dataclass(frozen=True)
class Synth:
    """The synthesized cloud assembly and what went into it."""

    outdir: Path
    dev: dict
    prod: dict
    dev_stack: object
    prod_stack: object
    functions_dir: Path
    web_dir: Path

    def template(self, stage: str):
        from aws_cdk.assertions import Template

        return Template.from_json(self.dev if stage == "dev" else self.prod)


def _inputs(base: Path) -> tuple[Path, Path, Path]:
    from infra.assets import stage_functions

    functions_dir = base / "functions"
    stage_functions(functions_dir)
    layer = base / "layer"
    (layer / "python" / "fma").mkdir(parents=True)
    (layer / "python" / "fma" / "__init__.py").write_text("")
    web = base / "web"
    for rel in ("index.html", "app.js", "node_modules/lib/index.js", "tests/app.test.js"):
        (web / rel).parent.mkdir(parents=True, exist_ok=True)
        (web / rel).write_text("x")
    return functions_dir, layer, web


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    from aws_cdk import App, Validations
    from cdk_nag import AwsSolutionsChecks

    from infra.config import FEATURE_FLAGS, Config
    from infra.stack import FmaStack

    base = tmp_path_factory.mktemp("infra")
    functions_dir, layer, web = _inputs(base)
    paths = {"functions_build_dir": str(functions_dir), "layer_dir": str(layer), "web_dir": str(web)}
    app = App(outdir=str(base / "cdk.out"), context=FEATURE_FLAGS)
    dev = FmaStack(app, "fma-dev", config=Config.from_mapping({"stage": "dev", **paths}))
    prod = FmaStack(
        app,
        "fma-prod",
        config=Config.from_mapping(
            {
                "stage": "prod",
                "retain": True,
                "waf": True,
                "alarm_email": ALARM_EMAIL,
                "strategy_modules": STRATEGY_MODULES,
                "ingest_max_concurrency": PROD_INGEST_MAX_CONCURRENCY,
                **paths,
            }
        ),
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()  # raises on any cdk-nag finding without an acknowledgement
    templates = {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    return Synth(Path(assembly.directory), templates["fma-dev"], templates["fma-prod"], dev, prod, functions_dir, web)


def resources(template: dict, cfn_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type}


def functions_by_handler(template: dict) -> dict[str, dict]:
    """FMA functions keyed by their folder name (``api`` ...), CDK internals left out."""
    found = {}
    for res in resources(template, "AWS::Lambda::Function").values():
        handler = res["Properties"].get("Handler", "")
        if handler.endswith(".handler.handler"):
            found[handler.split(".")[0]] = res
    return found
