"""GET /v1/experiments as the dashboard compares experiments: filters by status, strategy and
name (bad values are 400s that change nothing), the latest metrics, and model file names."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from harness import update_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from fma.domain.auth import Role
from fma.services.rounds_view import model_filename


def model() -> dict[str, np.ndarray]:
    return {"w": np.zeros(2, np.float32)}


def names(res) -> list[str]:
    assert res.status == 200, res.body
    return sorted(e["name"] for e in res.json()["experiments"])


@pytest.fixture
def four(stack):
    """Digits A (fedavg, RUNNING), digits B (fedmedian, PAUSED), Cifar (fedavg, pending), Text (krum, STOPPED)."""
    dev = stack.token(Role.DEVELOPER)
    a = stack.create_experiment(dev, model(), name="Digits A")
    b = stack.create_experiment(dev, model(), name="digits B", strategy={"name": "fedmedian"})
    stack.api("PATCH", f"/v1/experiments/{b}", dev, json_body={"status": "PAUSED"})
    stack.api("POST", "/v1/experiments", dev, json_body={"name": "Cifar", "strategy": "fedavg"})
    t = stack.create_experiment(dev, model(), name="Text", strategy={"name": "krum"})
    stack.api("PATCH", f"/v1/experiments/{t}", dev, json_body={"status": "STOPPED"})
    return stack, dev, a


def test_filters_by_status_strategy_and_name(four):
    stack, dev, _ = four
    get = lambda **q: names(stack.api("GET", "/v1/experiments", dev, query=q))  # noqa: E731
    assert get() == ["Cifar", "Digits A", "Text", "digits B"]
    assert get(status="RUNNING") == ["Digits A"]
    assert get(status="RUNNING,PAUSED") == ["Digits A", "digits B"]
    assert get(strategy="fedavg") == ["Cifar", "Digits A"]
    assert get(q="DIGITS") == ["Digits A", "digits B"]  # any case, part of the name
    assert get(q="its b") == ["digits B"]
    assert get(q="digits", strategy="fedavg") == ["Digits A"]
    assert get(status="COMPLETED") == []
    assert get(q="") == get()


def test_filtered_pages_follow_the_cursor_without_skipping(four):
    stack, dev, _ = four
    seen, cursor = [], None
    for _ in range(10):
        query = {"strategy": "fedavg", "limit": "1", **({"cursor": cursor} if cursor else {})}
        body = stack.api("GET", "/v1/experiments", dev, query=query).json()
        assert len(body["experiments"]) <= 1
        seen += [e["name"] for e in body["experiments"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == ["Cifar", "Digits A"]


@pytest.mark.parametrize("query, parameter", [
    ({"status": "running"}, "status"),
    ({"status": "RUNNING,NOPE"}, "status"),
    ({"status": ","}, "status"),
    ({"strategy": "no-such-strategy"}, "strategy"),
    ({"strategy": "x" * 65}, "strategy"),
    ({"q": "a" * 201}, "q"),
    ({"q": "tab\there"}, "q"),
])
def test_bad_filter_values_are_400_and_change_nothing(four, query, parameter):
    stack, dev, _ = four
    before = stack.snapshot()
    res = stack.api("GET", "/v1/experiments", dev, query=query)
    assert res.status == 400, res.body
    error = res.json()["error"]
    assert error["code"] == "INVALID_QUERY_PARAMETER" and error["details"]["parameter"] == parameter
    assert error["message"]
    assert stack.snapshot() == before


def test_list_carries_the_latest_training_and_evaluation_metrics(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, model(), name="metrics", rounds={"min_updates": 2, "total_rounds": 3})
    clients = stack.enroll(dev, exp_id, 2)
    listed = lambda: stack.api("GET", "/v1/experiments", dev).json()["experiments"][0]  # noqa: E731
    assert listed()["latest_metrics"] == {"round": 0, "training": {}, "evaluation_round": None, "evaluation": {}}

    evaluate = lambda token, n, acc: stack.api(  # noqa: E731
        "POST", f"/v1/experiments/{exp_id}/rounds/{n}/evaluations", token,
        json_body={"num_examples": 10, "metrics": {"accuracy": acc}})
    assert evaluate(clients[0][1], 0, 0.1).status == 201
    assert listed()["latest_metrics"]["evaluation"] == {"accuracy": pytest.approx(0.1)}

    for (client_id, token), loss in zip(clients, (0.4, 0.8), strict=True):
        stack.submit(exp_id, 1, token, update_bytes(model(), 10, 1, {"loss": loss}))
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    stack.run_aggregations()
    latest = listed()["latest_metrics"]
    assert latest["round"] == 1 and latest["training"]["loss"] == pytest.approx(0.6)
    assert latest["evaluation_round"] == 0  # round 1's model has no evaluation yet: the one before it
    assert evaluate(clients[0][1], 1, 0.5).status == 201
    assert evaluate(clients[1][1], 1, 0.7).status == 201
    latest = listed()["latest_metrics"]
    assert latest["evaluation_round"] == 1 and latest["evaluation"]["accuracy"] == pytest.approx(0.6)
    assert listed()["current_round_state"] == "OPEN" and listed()["attention"] is None


def test_published_model_is_named_after_the_experiment(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, model(), name="Digits / non-IID: 6 clients")
    body = stack.api("GET", f"/v1/experiments/{exp_id}/models/0", dev).json()
    assert body["filename"] == "Digits-non-IID-6-clients-round-0.safetensors"
    query = parse_qs(urlsplit(body["url"]).query)
    assert query["response-content-disposition"] == [f'attachment; filename="{body["filename"]}"']


@pytest.mark.parametrize("name, expected", [
    ("digits", "digits-round-3.safetensors"),
    ("../../etc/passwd", "etc-passwd-round-3.safetensors"),
    ('a"b\\c\r\nd', "a-b-c-d-round-3.safetensors"),
    ("Ünïcode ☃", "n-code-round-3.safetensors"),
    ("☃☃☃", "model-round-3.safetensors"),
    ("...", "model-round-3.safetensors"),
])
def test_model_filename_is_sanitized(name, expected):
    assert model_filename(name, 3) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=0, max_value=99_999_999))
def test_model_filename_is_always_a_safe_plain_name(name, n):
    out = model_filename(name, n)
    assert out.endswith(f"-round-{n}.safetensors") and len(out) <= 140
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in out)
    assert not out.startswith((".", "-"))
