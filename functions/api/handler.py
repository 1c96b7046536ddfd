"""API function: API Gateway REST proxy -> powertools resolver -> fma services."""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.shared.json_encoder import Encoder

from api.errors import register_error_handlers
from api.routes import experiments, openapi, registry, rounds, tokens
from api.settings import cors_origin
from fma.domain import strict_json

logger = Logger()
cors = CORSConfig(allow_origin=cors_origin(),
                  allow_headers=["Authorization", "Content-Type", "If-None-Match", "Idempotency-Key"],
                  expose_headers=["ETag", "Retry-After", "Idempotency-Replayed"], max_age=600)
# Strict JSON out: a NaN in one experiment must never make a list unreadable for everyone.
app = APIGatewayRestResolver(cors=cors, serializer=functools.partial(strict_json.dumps, cls=Encoder))
for router in (tokens.router, experiments.router, rounds.router, registry.router, openapi.router):
    app.include_router(router, prefix="/v1")
register_error_handlers(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict, context: object) -> dict:
    params = event.get("pathParameters") or {}
    logger.append_keys(experiment_id=params.get("experiment_id"), round=params.get("n"))
    return app.resolve(event, context)
