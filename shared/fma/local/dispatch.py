"""Runs the Lambda handlers in-process: authorizer then API for a request, ingest, aggregate.

Used by local mode's gateway and worker threads, and by the tests. The handlers are imported
from the repository's `functions/` folder, exactly the code that Lambda runs.
"""

from __future__ import annotations

import base64
import importlib
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fma.local.events import FakeContext, api_event, authorizer_event, sqs_s3_event

FUNCTIONS_DIR = Path(__file__).resolve().parents[3] / "functions"
FUNCTION_NAMES = ("api", "authorizer", "ingest", "aggregate", "aggregate_piece", "sweeper")


def load_handler_module(name: str) -> Any:
    if not FUNCTIONS_DIR.is_dir():
        raise RuntimeError(f"functions/ not found at {FUNCTIONS_DIR}: local mode runs from a source checkout")
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    return importlib.import_module(f"{name}.handler")


def reset_handler_caches() -> None:
    """Drop each function's cached adapters (a new endpoint or moto backend takes effect)."""
    for name in FUNCTION_NAMES:
        module = sys.modules.get(f"{name}.handler")
        deps_fn = getattr(module, "deps", None) if module else None
        if deps_fn is not None and hasattr(deps_fn, "cache_clear"):
            deps_fn.cache_clear()
    api_deps = sys.modules.get("api.deps")
    if api_deps is not None:
        api_deps.deps.cache_clear()


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _error(status: int, code: str, message: str) -> HttpResult:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    return HttpResult(status, {"Content-Type": "application/json"}, body)


PUBLIC_PATHS = ("/v1/health", "/v1/openapi.json")


#: One request at a time per process, as in one Lambda execution environment: powertools'
#: resolver keeps the current event on the app object, so two threads inside the handler at
#: once could read each other's principal (local mode with --workers 0 serves requests on threads).
_ENVIRONMENT = threading.RLock()


def call_api(method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
             query: dict[str, str] | None = None) -> HttpResult:
    """What API Gateway does: OPTIONS and health skip the authorizer; others must pass it."""
    with _ENVIRONMENT:
        return _call_api(method, path, headers, body, query)


def _call_api(method: str, path: str, headers: dict[str, str] | None, body: bytes | None,
              query: dict[str, str] | None) -> HttpResult:
    headers = headers or {}
    context: dict[str, Any] = {}
    if method != "OPTIONS" and path not in PUBLIC_PATHS:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        if not auth:
            return _error(401, "UNAUTHORIZED", "missing Authorization header")
        try:
            authorizer = load_handler_module("authorizer")
            result = authorizer.handler(authorizer_event(auth, method, path), FakeContext("authorizer"))
        except Exception:
            return _error(401, "UNAUTHORIZED", "invalid, expired or revoked token")
        if result["policyDocument"]["Statement"][0]["Effect"] != "Allow":
            reason = result.get("context") or {}
            return _error(403, reason.get("code", "FORBIDDEN"),
                          reason.get("message", "this token may not call the API"))
        context = {**result.get("context", {}), "principalId": result["principalId"]}
    event = api_event(method, path, headers=headers, body=body, query=query, authorizer=context)
    response = load_handler_module("api").handler(event, FakeContext("api"))
    raw = response.get("body") or ""
    data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
    out_headers = {k: v for k, v in (response.get("headers") or {}).items()}
    for k, values in (response.get("multiValueHeaders") or {}).items():
        out_headers[k] = ", ".join(values)
    return HttpResult(int(response["statusCode"]), out_headers, data)


def run_ingest(bucket: str, keys: list[str]) -> dict[str, Any]:
    return load_handler_module("ingest").handler(sqs_s3_event(bucket, keys), FakeContext("ingest"))


def run_ingest_event(event: dict[str, Any]) -> dict[str, Any]:
    return load_handler_module("ingest").handler(event, FakeContext("ingest"))


def run_aggregate(payload: dict[str, Any]) -> dict[str, Any]:
    return load_handler_module("aggregate").handler(payload, FakeContext("aggregate"))


def run_aggregate_piece(payload: dict[str, Any]) -> dict[str, Any]:
    """One fanout Map item, through the aggregate_piece handler (as Step Functions invokes it)."""
    return load_handler_module("aggregate_piece").handler(payload, FakeContext("aggregate_piece"))
