"""The `Idempotency-Key` header on creating POSTs (fma.services.idempotency does the work).

    @router.post("/experiments")
    @idempotent(router)
    def create() -> Response: ...

Without the header a route runs as before. With it, the first response (status and body) is
saved and replayed to every retry with the same key and body, marked `Idempotency-Replayed: true`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from api.context import principal, raw_body
from api.deps import deps
from fma.domain import strict_json
from fma.services import idempotency

HEADER = "idempotency-key"


def idempotent(router: APIGatewayRouter) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    def wrap(route: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(route)
        def run(*args: object, **kwargs: object) -> Response:
            event = router.current_event
            key = next((v for k, v in (event.headers or {}).items() if k.lower() == HEADER), None)
            if key is None:
                return route(*args, **kwargs)
            claim = idempotency.begin(deps(), principal(router), key, event.http_method, event.path, raw_body(router))
            if claim.replay is not None:
                status, body = claim.replay
                return Response(status, "application/json", body, headers={"Idempotency-Replayed": "true"})
            try:
                response = route(*args, **kwargs)
            except BaseException:
                idempotency.release(deps(), claim)
                raise
            return _finish(claim, response)
        return run
    return wrap


def _finish(claim: idempotency.Claim, response: Response) -> Response:
    body = response.body if isinstance(response.body, str) else strict_json.dumps(response.body)
    response.body = body
    if 200 <= response.status_code < 300:
        idempotency.complete(deps(), claim, response.status_code, body)
    else:
        idempotency.release(deps(), claim)
    return response
