"""The model, updates, evaluations and rounds of an experiment."""

from __future__ import annotations

from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from api.context import json_body, principal, raw_body, round_number
from api.deps import deps
from api.idempotency import idempotent
from fma.services import participation, rounds_view
from fma.services.bodies import parse_limit

router = APIGatewayRouter()


@router.get("/experiments/<experiment_id>/model")
def model(experiment_id: str) -> Response:
    info = participation.model_info(deps(), principal(router), experiment_id)
    etag = f'"{info["sha256"]}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if_none_match = router.current_event.headers.get("If-None-Match") or router.current_event.headers.get(
        "if-none-match")
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        # Nothing changed: tell the poller when to ask again (throttling is sized on it).
        return Response(304, None, "", headers={**headers, **poll_hint()})
    return Response(200, "application/json", info, headers=headers)


@router.post("/experiments/<experiment_id>/rounds/<n>/updates")
@idempotent(router)
def request_upload(experiment_id: str, n: str) -> Response:
    body = participation.request_upload(deps(), principal(router), experiment_id, round_number(n), json_body(router))
    return Response(201, "application/json", body)


# `update_id` is "<round>:<client_id>": a client may send the colon percent-encoded (%3A).
@router.get("/experiments/<experiment_id>/rounds/<n>/updates/<update_id>/parts")
def update_parts(experiment_id: str, n: str, update_id: str) -> dict:
    params = router.current_event.query_string_parameters or {}
    return participation.update_parts(deps(), principal(router), experiment_id, round_number(n),
                                      unquote(update_id), params.get("from"))


@router.post("/experiments/<experiment_id>/rounds/<n>/updates/<update_id>/complete")
@idempotent(router)
def complete_update(experiment_id: str, n: str, update_id: str) -> Response:
    body = participation.complete_update(deps(), principal(router), experiment_id, round_number(n),
                                         unquote(update_id), json_body(router))
    return Response(202, "application/json", body)


@router.put("/experiments/<experiment_id>/rounds/<n>/updates")
def put_update(experiment_id: str, n: str) -> Response:
    body = participation.put_update(deps(), principal(router), experiment_id, round_number(n), raw_body(router))
    return Response(202, "application/json", body)


@router.post("/experiments/<experiment_id>/rounds/<n>/evaluations")
@idempotent(router)
def evaluation(experiment_id: str, n: str) -> Response:
    body = participation.post_evaluation(deps(), principal(router), experiment_id, round_number(n),
                                         json_body(router))
    return Response(201, "application/json", body)


@router.get("/experiments/<experiment_id>/rounds")
def rounds(experiment_id: str) -> dict:
    params = router.current_event.query_string_parameters or {}
    return rounds_view.list_rounds(deps(), principal(router), experiment_id, parse_limit(params.get("limit"), 20),
                                   params.get("cursor"))


@router.get("/experiments/<experiment_id>/rounds/<n>")
def one_round(experiment_id: str, n: str) -> Response:
    body = rounds_view.get_round(deps(), principal(router), experiment_id, round_number(n))
    # A round still in progress will not change for a while: the poller waits Retry-After seconds.
    headers = poll_hint() if body.get("state") in WAITING_STATES else {}
    return Response(200, "application/json", body, headers=headers)


#: round states a poller is waiting on (the round has not published or failed yet).
WAITING_STATES = ("OPEN", "SEALED", "AGGREGATING")


def poll_hint() -> dict[str, str]:
    """`Retry-After` in seconds (FMA_POLL_RETRY_AFTER_SECONDS) for a poll that found nothing new."""
    return {"Retry-After": str(deps().limits.poll_retry_after_seconds)}


@router.get("/experiments/<experiment_id>/models/<n>")
def published_model(experiment_id: str, n: str) -> dict:
    return rounds_view.published_model(deps(), principal(router), experiment_id, round_number(n))
