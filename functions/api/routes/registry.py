"""The model registry: named, immutable versions of published rounds (issue 16)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from api.context import json_body, principal
from api.deps import deps
from fma.services import registry
from fma.services.bodies import parse_limit

router = APIGatewayRouter()


def _page() -> tuple[int, str | None]:
    params = router.current_event.query_string_parameters or {}
    return parse_limit(params.get("limit")), params.get("cursor")


@router.get("/registry")
def names() -> dict:
    return registry.list_names(deps(), principal(router), *_page())


@router.post("/registry/<name>/versions")
def create(name: str) -> Response:
    body = registry.create_version(deps(), principal(router), name, json_body(router))
    return Response(201, "application/json", body)


@router.get("/registry/<name>/versions")
def versions(name: str) -> dict:
    return registry.list_versions(deps(), principal(router), name, *_page())


@router.get("/registry/<name>/versions/<version>")
def version(name: str, version: str) -> dict:
    return registry.get_version(deps(), principal(router), name, version)


@router.patch("/registry/<name>/versions/<version>")
def patch(name: str, version: str) -> dict:
    return registry.patch_version(deps(), principal(router), name, version, json_body(router))
