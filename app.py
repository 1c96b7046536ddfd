#!/usr/bin/env python3
"""CDK entry point: build the FMA stack from cdk context, run cdk-nag, synthesize.

``make synth`` runs this file directly; the cdk CLI (``cdk synth/deploy``) runs it through
``cdk.json``. Run directly, it reads the ``context`` block of ``cdk.json`` itself and writes
``./cdk.out``; under the CLI, the CLI provides both.
"""

import json
import os
from pathlib import Path

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from infra.config import FEATURE_FLAGS, Config
from infra.stack import FmaStack

HERE = Path(__file__).resolve().parent


def default_app() -> App:
    if "CDK_CONTEXT_JSON" in os.environ or "CDK_OUTDIR" in os.environ:
        return App(context=FEATURE_FLAGS)
    context = json.loads((HERE / "cdk.json").read_text()).get("context", {})
    return App(outdir=str(HERE / "cdk.out"), context={**FEATURE_FLAGS, **context})


def build_app(app: App | None = None) -> tuple[App, FmaStack]:
    """Compose the app; cdk-nag AwsSolutions fails the synth on unacknowledged findings."""
    app = app or default_app()
    config = Config.from_context(app.node)
    env = Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION"))
    stack = FmaStack(app, config.stack_name, config=config, env=env)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


if __name__ == "__main__":
    build_app()[0].synth()
