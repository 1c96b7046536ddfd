"""Shared test setup: fake AWS credentials, moto, and a harness that calls the real handlers."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "FMA_TABLE_NAME": "fma-test", "FMA_BUCKET_NAME": "fma-test-models",
    "POWERTOOLS_SERVICE_NAME": "fma-test", "POWERTOOLS_METRICS_NAMESPACE": "FMA", "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_DEV": "false", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    # The tests' deployment expects 64 clients per experiment (8 shards) unless a test says more:
    # every round on moto then reads 8 counter shards, not the 125 of the built-in default (1000),
    # which made the aws-connector tests 1.5-2.5x slower. Tests of the layout set expected_clients.
    "FMA_DEFAULT_EXPECTED_CLIENTS": "64",
})
# The SDK saves client registrations under $XDG_CONFIG_HOME/fma: keep the tests' (and the local
# clients they start) out of the user's own config folder.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="fma-test-config-")
atexit.register(shutil.rmtree, os.environ["XDG_CONFIG_HOME"], True)
for extra in (ROOT / "functions", ROOT / "shared", ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

# Powertools binds its logger to stdout at import; keep test output readable.
LOG_SINK = io.StringIO()

import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402


@pytest.fixture
def stack():
    """A fresh moto account with the FMA table and bucket, handlers wired to it."""
    from harness import start_stack, stop_stack

    from fma.local.moto_atomic import make_moto_dynamodb_atomic

    make_moto_dynamodb_atomic()

    with mock_aws():
        yield start_stack()
        stop_stack()
