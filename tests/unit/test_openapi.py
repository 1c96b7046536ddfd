"""The OpenAPI document: current with its generator, covering every route, valid, and public."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from conftest import ROOT

from fma.local import dispatch

ROUTE = re.compile(r'@router\.(get|post|put|patch|delete)\("([^"]+)"\)')


def _generator():
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "scripts" / "gen_openapi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _routes() -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / "functions" / "api" / "routes").glob("*.py"):
        for verb, route in ROUTE.findall(path.read_text()):
            found.add((verb, "/v1" + re.sub(r"<(\w+)>", r"{\1}", route)))
    return found


def test_committed_document_is_the_generators_output():
    gen = _generator()
    assert gen.OUT.read_text() == gen.render(), "run: python scripts/gen_openapi.py"


def test_document_names_every_route_and_no_other():
    doc = json.loads(_generator().render())
    documented = {(verb, path) for path, ops in doc["paths"].items() for verb in ops}
    assert documented == _routes()


def test_every_protected_operation_documents_auth_errors_and_the_error_body():
    doc = json.loads(_generator().render())
    for path, ops in doc["paths"].items():
        for verb, op in ops.items():
            public = op.get("security") == []
            assert public == (path in dispatch.PUBLIC_PATHS), (verb, path)
            if not public:
                assert {"401", "403"} <= set(op["responses"]), (verb, path)
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    assert response == {"$ref": f"#/components/responses/E{status}"}
    error = doc["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message", "details"]


def test_document_is_valid_openapi_3_1():
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads((ROOT / "functions" / "api" / "openapi.json").read_text()))


def test_document_is_served_without_a_token():
    result = dispatch.call_api("GET", "/v1/openapi.json")
    assert result.status == 200
    assert result.headers["Content-Type"] == "application/json"
    assert result.json() == json.loads((ROOT / "functions" / "api" / "openapi.json").read_text())
