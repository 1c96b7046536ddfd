"""The model registry (named, immutable versions of published rounds) and round history artifacts."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from api.context import json_body, principal, round_number
from api.deps import deps
from fma.services import history, registry
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


@router.get("/experiments/<experiment_id>/rounds/<n>/artifacts")
def artifacts(experiment_id: str, n: str) -> dict:
    """Presigned downloads of a round's history objects (for `fma verify --url`)."""
    return history.artifacts(deps(), principal(router), experiment_id, round_number(n))
