"""API fuzzing: schemathesis against local mode, driven by the published OpenAPI document.

Every operation is fuzzed with valid-by-schema requests as an admin, a developer, a client and
an enrollment token, then with invalid ones as a developer and a client, each with a bounded
number of examples; then every operation with a JSON body gets hostile bodies (issue 11: nesting
bombs, NaN, Infinity, 1e400, 400-digit integers, duplicate keys, invalid UTF-8, lone surrogates)
and every round path segment non-ASCII digits, each answered 400 with the error body.
Path parameters are often pinned to the real experiment and its rounds 0
and 1 so that requests get past the 404s into the handlers. Checks: no 5xx, every status
documented, content type and body match the schema, documented headers present. Failures are
collected over all operations and reported together.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from local_mode import local_mode
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fma_client import Client, Developer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
#: (generation mode, roles, examples per operation and role): ~700 requests in all.
PASSES = (
    (GenerationMode.POSITIVE, ("admin", "developer", "client", "enrollment"), 8),
    (GenerationMode.NEGATIVE, ("developer", "client"), 4),
)
#: fuzzed last (the developer last of all): they may stop the experiment or set its model.
MUTATING = ("PATCH /v1/experiments/{experiment_id}", "PUT /v1/experiments/{experiment_id}/model",
            "DELETE /v1/experiments/{experiment_id}/clients/{client_id}", "DELETE /v1/tokens/{token_id}")
#: (body, the error code it must get), sent to every operation with a JSON body.
HOSTILE = [
    (b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "JSON_TOO_DEEP"),
    (b'{"name": "x", "client_config": {"lr": NaN}}', "NON_FINITE_NUMBER"),
    (b'{"name": "x", "metrics": {"loss": Infinity}}', "NON_FINITE_NUMBER"),
    (b'{"name": "x", "size": 1e400}', "NUMBER_OUT_OF_RANGE"),
    (b'{"name": "x", "size": 1' + b"0" * 400 + b"}", "NUMBER_OUT_OF_RANGE"),
    (b'{"name": "x", "name": "y"}', "DUPLICATE_KEY"),
    (b'{"name": "\xff"}', "INVALID_UTF8"),
    (b'{"name": "\\ud800"}', "INVALID_UTF8"),
]


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


def _cases(operation, experiment_id: str, mode: GenerationMode):
    """Generated cases, most of them aimed at the real experiment (and its rounds 0 and 1)."""
    names = {p.name for p in operation.path_parameters}
    strategies = [operation.as_strategy(mode)]
    if "experiment_id" in names:
        strategies.append(operation.as_strategy(mode, path_parameters={"experiment_id": experiment_id}))
        if "n" in names:
            strategies += [operation.as_strategy(mode, path_parameters={"experiment_id": experiment_id, "n": n})
                           for n in (0, 1)]
    return st.one_of(strategies)


def _fuzz(operation, mode: GenerationMode, examples: int, ids: dict[str, str], role: str, base_url: str,
          session: requests.Session, statuses: dict[str, set[int]]) -> list[str]:
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {ids[role]}"}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=_cases(operation, ids["experiment_id"], mode))
    def run(case) -> None:
        try:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
            statuses[operation.label].add(response.status_code)
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as exc:  # schemathesis' FailureGroup, or a transport error
            failures.append(f"{type(exc).__name__}: {exc}")

    with contextlib.suppress(Unsatisfiable):  # negative mode: nothing here can be made invalid
        run()
    return failures


def test_fuzzed_requests_get_documented_answers_and_never_a_5xx(tmp_path):
    with local_mode(tmp_path / "state") as (url, admin):
        ids = _setup(url, admin)
        schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json", timeout=10)
        operations = sorted((r.ok() for r in schema.get_all_operations()), key=lambda op: op.label)
        hostile = _hostile(url, ids, operations)  # first: the fuzzing below may stop the experiment
        found: dict[str, list[str]] = {}
        statuses: dict[str, set[int]] = defaultdict(set)
        with requests.Session() as session:
            for mode, roles, examples in PASSES:
                runs = [(op, role) for op in operations if op.label not in MUTATING for role in roles]
                runs += [(op, role) for op in operations if op.label in MUTATING for role in roles]
                for operation, role in runs:
                    problems = _fuzz(operation, mode, examples, ids, role, url, session, statuses)
                    if problems:
                        found[f"{mode.value} {role} {operation.label}"] = problems
        # The stack survived the fuzzing: it still answers and the real experiment is intact.
        assert requests.get(f"{url}/v1/health", timeout=10).status_code == 200
        assert Developer(url, ids["developer"]).experiment(ids["experiment_id"])["id"] == ids["experiment_id"]
    report = "\n\n".join(f"== {key}\n" + "\n".join(problems[:2]) for key, problems in found.items())
    assert not found, f"{len(found)} operation/role pair(s) failed:\n{report}"
    assert not hostile, "\n".join(hostile[:20])
    # The fuzzing reached the handlers, not only the authorizer: most operations succeeded at least once.
    succeeded = sorted(label for label, codes in statuses.items() if any(200 <= c < 300 for c in codes))
    assert len(succeeded) >= 12, succeeded
    assert not any(c >= 500 for codes in statuses.values() for c in codes)


def _hostile(url: str, ids: dict[str, str], operations) -> list[str]:
    """Hostile bodies into every JSON operation and non-ASCII round segments into every {n}."""
    problems: list[str] = []
    role_for = {"/v1/tokens": "admin", "/clients": "enrollment", "/updates": "client", "/evaluations": "client"}
    with requests.Session() as session:
        for op in operations:
            role = next((r for suffix, r in role_for.items() if op.path.endswith(suffix)), "developer")
            headers = {"Authorization": f"Bearer {ids[role]}", "Content-Type": "application/json"}
            path = op.path.replace("{experiment_id}", ids["experiment_id"])
            if "json" in str(op.definition.raw.get("requestBody", {}).get("content", {})):
                for body, code in HOSTILE:
                    res = session.request(op.method.upper(), url + path.replace("{n}", "1"), data=body,
                                          headers=headers, timeout=30)
                    _expect(problems, f"{op.label} {body[:40]!r}", res, code)
            if "{n}" in path:
                for segment in ("%C2%B2", "%C2%B9", "%D9%A1", "+1"):  # ², ¹, Arabic-Indic one
                    res = session.request(op.method.upper(), url + path.replace("{n}", segment),
                                          data=b'{"size": 1}', headers=headers, timeout=30)
                    _expect(problems, f"{op.label} n={segment}", res, "INVALID_ROUND")
    return problems


def _expect(problems: list[str], what: str, res: requests.Response, code: str) -> None:
    try:
        error = res.json()["error"]
        ok = res.status_code == 400 and error["code"] == code and set(error) == {"code", "message", "details"}
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        problems.append(f"{what}: {res.status_code} {res.text[:200]}")
