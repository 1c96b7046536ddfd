"""GET /v1/openapi.json: the API's OpenAPI 3.1 document (public, like the health check).

The file is written by scripts/gen_openapi.py and ships beside the handler; it is read once
per cold start, on first request.
"""

from __future__ import annotations

import functools
from pathlib import Path

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

DOCUMENT = Path(__file__).resolve().parents[1] / "openapi.json"

router = APIGatewayRouter()


@functools.cache
def document() -> str:
    return DOCUMENT.read_text(encoding="utf-8")


@router.get("/openapi.json")
def openapi() -> Response:
    return Response(200, "application/json", document(), headers={"Cache-Control": "public, max-age=300"})
