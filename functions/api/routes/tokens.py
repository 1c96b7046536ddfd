"""POST /v1/tokens, DELETE /v1/tokens/{token_id} and the unauthenticated health check."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from api.context import json_body, principal
from api.deps import deps
from api.idempotency import idempotent
from fma.services import access

router = APIGatewayRouter()


@router.get("/health")
def health() -> dict:
    return {"status": "ok"}


@router.post("/tokens")
@idempotent(router)
def create_token() -> Response:
    body = access.create_token(deps(), principal(router), json_body(router))
    return Response(201, "application/json", body)


@router.delete("/tokens/<token_id>")
def revoke_token(token_id: str) -> dict:
    return access.revoke_token(deps(), principal(router), token_id)
