"""Experiments: create, list, read, change status, initial model, enrollment tokens."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from api.context import json_body, principal, raw_body
from api.deps import deps
from api.idempotency import idempotent
from fma.services import experiments, initial_upload
from fma.services.bodies import parse_flag, parse_limit

router = APIGatewayRouter()


@router.post("/experiments")
@idempotent(router)
def create() -> Response:
    body = experiments.create_experiment(deps(), principal(router), json_body(router))
    return Response(201, "application/json", body)


@router.get("/experiments")
def list_all() -> dict:
    params = router.current_event.query_string_parameters or {}
    limit = parse_limit(params.get("limit"))
    archived = parse_flag(params.get("archived"), "archived")
    return experiments.list_experiments(deps(), principal(router), limit, params.get("cursor"), archived,
                                        params=params)


@router.get("/experiments/<experiment_id>")
def get(experiment_id: str) -> dict:
    return experiments.experiment_detail(deps(), principal(router), experiment_id)


@router.patch("/experiments/<experiment_id>")
def patch(experiment_id: str) -> dict:
    return experiments.patch_experiment(deps(), principal(router), experiment_id, json_body(router))


@router.put("/experiments/<experiment_id>/model")
def put_model(experiment_id: str) -> Response:
    body = experiments.put_initial_model(deps(), principal(router), experiment_id, raw_body(router))
    return Response(202, "application/json", body)


@router.get("/experiments/<experiment_id>/model/parts")
def model_parts(experiment_id: str) -> dict:
    params = router.current_event.query_string_parameters or {}
    return initial_upload.model_parts(deps(), principal(router), experiment_id, params.get("from"))


@router.post("/experiments/<experiment_id>/model/complete")
@idempotent(router)
def complete_model(experiment_id: str) -> Response:
    body = initial_upload.complete_model(deps(), principal(router), experiment_id, json_body(router))
    return Response(202, "application/json", body)


@router.post("/experiments/<experiment_id>/enrollment-tokens")
@idempotent(router)
def enrollment_token(experiment_id: str) -> Response:
    body = experiments.create_enrollment_token(deps(), principal(router), experiment_id, json_body(router))
    return Response(201, "application/json", body)


@router.post("/experiments/<experiment_id>/clients")
@idempotent(router)
def register(experiment_id: str) -> Response:
    body = experiments.register_client(deps(), principal(router), experiment_id, json_body(router))
    return Response(201, "application/json", body)


@router.delete("/experiments/<experiment_id>/clients/<client_id>")
def revoke_client(experiment_id: str, client_id: str) -> dict:
    return experiments.revoke_client(deps(), principal(router), experiment_id, client_id)
