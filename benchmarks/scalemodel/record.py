"""Record FMA's access pattern: one small round through the real handlers on moto, every
DynamoDB and S3 request of every client operation captured (fma.local.hot_keys listeners).

The run is in process (moto's `mock_aws`, the handlers called as API Gateway, S3 -> SQS and
Lambda's async invoke would call them, like tests/harness.py): N clients register with one
enrollment token, download the model, upload their update (direct PUT), are ingested, poll
their round and the model; the last accept seals the round, the aggregate function publishes.
Each operation's requests become one *instance*; `fma_scale.profiles` folds the instances of an
operation class into its profile. Only code that exists on both designs' commits is used
(the handlers, fma.local.dispatch, fma.local.hot_keys), so the same file records both.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("FMA_SCALE_ROOT", Path(__file__).resolve().parents[2]))
ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "FMA_TABLE_NAME": "fma-scale",
    "FMA_BUCKET_NAME": "fma-scale-models", "POWERTOOLS_SERVICE_NAME": "fma-scale",
    "POWERTOOLS_METRICS_NAMESPACE": "FMA", "POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true",
    # the deployment's default (1,000 clients: S = 125 shards), whatever the caller's environment says
    "FMA_DEFAULT_EXPECTED_CLIENTS": "1000",
    # the dashboard's CloudFront origin, where a design with pointer objects gives clients poll URLs
    "FMA_POINTER_BASE_URL": "https://dashboard.example",
}
S3_CALLS = {"put_object": "PUT", "get_object": "GET", "head_object": "HEAD", "copy_object": "PUT",
            "delete_object": "DELETE", "list_objects": "LIST", "list_objects_v2": "LIST",
            "upload_part": "PUT", "create_multipart_upload": "PUT", "complete_multipart_upload": "PUT"}


class Tracer:
    """Collects the requests of the operation currently running into `instances`."""

    def __init__(self) -> None:
        self.instances: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None

    @contextlib.contextmanager
    def operation(self, name: str, **calls: int):
        """Requests made inside belong to one instance of `name`; `calls` counts the API Gateway
        requests, Lambda invocations and queue messages the operation is made of."""
        self.current = {"op": name, "calls": dict(calls), "ddb": [], "s3": []}
        try:
            yield self.current
        finally:
            self.instances.append(self.current)
            self.current = None

    def ddb(self, event: dict[str, Any]) -> None:
        if self.current is not None:
            self.current["ddb"].append(event)

    def s3(self, call: str, key: str, size: int) -> None:
        if self.current is not None and not getattr(_S3_INSIDE, "active", False):
            self.current["s3"].append({"call": S3_CALLS[call], "key": key, "bytes": size})


_S3_INSIDE = threading.local()


#: the tracer the S3 wrappers feed (one recording at a time)
_ACTIVE: list[Tracer] = []


def _meter_s3() -> None:
    """Wrap moto's S3 backend (once) so every object request of an operation is traced once."""
    from moto.s3.models import S3Backend

    for name in S3_CALLS:
        original = getattr(S3Backend, name, None)
        if original is not None and not getattr(original, "_fma_traced", False):
            setattr(S3Backend, name, _s3_wrapper(original, name))


def _s3_wrapper(original, name: str):
    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        outer = not getattr(_S3_INSIDE, "active", False)
        if outer and _ACTIVE:
            key = kwargs.get("key_name") or (args[1] if len(args) > 1 and isinstance(args[1], str) else "")
            key = key or kwargs.get("prefix") or ""
            value = kwargs.get("value", args[2] if name == "put_object" and len(args) > 2 else b"")
            _ACTIVE[-1].s3(name, key, len(value) if isinstance(value, bytes | bytearray) else 0)
        _S3_INSIDE.active = True
        try:
            return original(self, *args, **kwargs)
        finally:
            if outer:
                _S3_INSIDE.active = False

    wrapper._fma_traced = True  # type: ignore[attr-defined]
    return wrapper


def _setup_paths() -> None:
    for extra in (ROOT / "functions", ROOT / "shared"):
        if str(extra) in sys.path:
            sys.path.remove(str(extra))
        sys.path.insert(0, str(extra))
    if any(name == "fma" or name.startswith("fma.") for name in sys.modules):
        import fma

        if Path(fma.__file__).resolve().parents[1] != (ROOT / "shared").resolve():
            raise RuntimeError(f"fma was imported from {fma.__file__}, not from {ROOT}")


def record(clients: int = 30, params: int = 256) -> dict[str, Any]:
    """Run one round of `clients` and return every operation instance with its requests."""
    _setup_paths()
    from moto import mock_aws

    from fma.local import hot_keys
    from fma.local.moto_atomic import make_moto_dynamodb_atomic
    from scalemodel.flow import Round

    make_moto_dynamodb_atomic()
    tracer, saved = Tracer(), dict(os.environ)
    os.environ.update(ENV)
    try:
        with mock_aws():
            run = Round(tracer, clients, params)
            hot_keys.install()
            _meter_s3()
            hot_keys.LISTENERS.append(tracer.ddb)
            _ACTIVE.append(tracer)
            try:
                run.round()
            finally:
                _ACTIVE.remove(tracer)
                hot_keys.LISTENERS.remove(tracer.ddb)
                run.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"clients": clients, "params": params, "experiment_id": run.exp_id, "client_ids": run.client_ids,
            "enroll_hash": run.enroll_hash,
            "instances": tracer.instances}
