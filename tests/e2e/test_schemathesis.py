"""API fuzzing: schemathesis against local mode, driven by the published OpenAPI document.

Every operation is fuzzed as an admin, a developer, a client and (for registering) an
enrollment token, with a bounded number of examples. Path parameters are often pinned to the
real experiment and its open round so that requests get past the 404s into the handlers.
Checks: no 5xx, every status documented, content type and body match the schema, documented
headers present. Failures are collected over all operations and reported together.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from local_mode import local_mode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fma_client import Client, Developer

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
EXAMPLES = 12  # per operation and role: ~17 operations x 4 roles stays well under a minute
ROLES = ("admin", "developer", "client", "enrollment")
#: run last (every role, the developer last): they may stop the experiment or set its model.
MUTATING_LAST = ("PATCH /v1/experiments/{experiment_id}", "PUT /v1/experiments/{experiment_id}/model")


def _setup(url: str, admin: str) -> dict[str, str]:
    dev_token = Developer(url, admin).create_token("developer", name="fuzz")["token"]
    dev = Developer(url, dev_token)
    initial = {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}
    exp = dev.create_experiment("fuzz", initial, rounds={"min_updates": 1000, "total_rounds": 2})
    enroll = dev.enrollment_token(exp["id"], max_uses=100_000)["token"]
    client = Client(url, exp["id"], enrollment_token=enroll)
    client.register()
    return {"experiment_id": exp["id"], "admin": admin, "developer": dev_token, "client": client.token or "",
            "enrollment": enroll}


def _cases(operation, experiment_id: str):
    """Generated cases, half of them aimed at the real experiment (and its rounds 0 and 1)."""
    names = {p.name for p in operation.path_parameters}
    strategies = [operation.as_strategy()]
    if "experiment_id" in names:
        strategies.append(operation.as_strategy(path_parameters={"experiment_id": experiment_id}))
        if "n" in names:
            strategies += [operation.as_strategy(path_parameters={"experiment_id": experiment_id, "n": n})
                           for n in (0, 1)]
    return st.one_of(strategies)


def _fuzz(operation, experiment_id: str, base_url: str, token: str, session: requests.Session) -> list[str]:
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=_cases(operation, experiment_id))
    def run(case) -> None:
        try:
            case.call_and_validate(base_url=base_url, session=session, checks=CHECKS,
                                   headers={"Authorization": f"Bearer {token}"}, timeout=30)
        except Exception as exc:  # schemathesis' FailureGroup, or a transport error
            failures.append(f"{type(exc).__name__}: {exc}")

    run()
    return failures


def test_fuzzed_requests_get_documented_answers_and_never_a_5xx(tmp_path):
    started = time.monotonic()
    with local_mode(tmp_path / "state") as (url, admin):
        ids = _setup(url, admin)
        schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json", timeout=10)
        operations = sorted((r.ok() for r in schema.get_all_operations()),
                            key=lambda op: (op.label in MUTATING_LAST, op.label))
        found: dict[str, list[str]] = {}
        calls = 0
        runs = [(role, op) for op in operations if op.label not in MUTATING_LAST for role in ROLES]
        runs += [(role, op) for op in operations if op.label in MUTATING_LAST for role in ROLES]
        with requests.Session() as session:
            for role, operation in runs:
                problems = _fuzz(operation, ids["experiment_id"], url, ids[role], session)
                calls += 1
                if problems:
                    found[f"{role} {operation.label}"] = problems
        # The stack survived the fuzzing: it still answers and the real experiment is intact.
        health = requests.get(f"{url}/v1/health", timeout=10)
        assert health.status_code == 200
        assert Developer(url, ids["developer"]).experiment(ids["experiment_id"])["id"] == ids["experiment_id"]
    report = "\n\n".join(f"== {key}\n" + "\n".join(v[:2]) for key, v in found.items())
    assert not found, f"{len(found)} operation(s) failed:\n{report}"
    assert calls == len(ROLES) * len(operations)
    assert time.monotonic() - started < 90
