"""The one map from domain errors to HTTP: status from the error class, body per DESIGN section 6."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from fma.domain import strict_json
from fma.domain.errors import FmaError

logger = Logger(child=True)


def error_response(status: int, code: str, message: str, details: dict | None = None) -> Response:
    return Response(status_code=status, content_type="application/json",
                    body=strict_json.dumps({"error": {"code": code, "message": message,
                                                       "details": details or {}}}))


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(FmaError)
    def _domain(exc: FmaError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.not_found
    def _not_found(exc: Exception) -> Response:
        return error_response(404, "ROUTE_NOT_FOUND", "no such route")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        request_id = app.lambda_context.aws_request_id if app.lambda_context else None
        logger.exception("unexpected error")
        return error_response(500, "INTERNAL", "internal error", {"request_id": request_id})
