"""Client.run: the whole loop against a fake server, including pauses and lost races."""

from __future__ import annotations

import numpy as np
import pytest

from fma_client import Client, Conflict, UpdateRejected

from .conftest import MODEL, error_body
from .fake_server import FakeServer

INITIAL = {"w": np.zeros((2, 2), np.float32), "b": np.zeros(2, np.float32)}


def train(seen: list[dict]):
    """Add one to every weight (returned as float64, as numpy training tends to)."""

    def train_fn(weights, config):
        seen.append(dict(config))
        return {k: v.astype(np.float64) + 1.0 for k, v in weights.items()}, 10, {"loss": 0.5}

    return train_fn


def test_run_trains_every_round_until_the_experiment_completes(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=2)
    seen: list[dict] = []

    history = client.run(train(seen))
    assert [h["round"] for h in history] == [1, 2]
    assert all(h["status"] in ("ACCEPTED", "APPLIED") for h in history)
    assert [h["round_metrics"] for h in history] == [{"loss": 0.1}, {"loss": 0.2}]
    assert seen == [{"lr": 0.5, "round": 1, "server-round": 1},
                    {"lr": 0.5, "round": 2, "server-round": 2}]  # fmt: skip
    assert [s["meta"]["fma.round"] for s in server.submitted] == ["1", "2"]
    assert all(t.dtype == np.float32 for s in server.submitted for t in s["tensors"].values())
    final, round, _ = client.get_model()
    assert round is None
    np.testing.assert_array_equal(final["w"], np.full((2, 2), 2.0, np.float32))


def test_run_waits_out_a_pause_without_training(client: Client, http, fake_time):
    server = FakeServer(http, INITIAL, total_rounds=1)
    server.paused_polls = 3
    seen: list[dict] = []

    history = client.run(train(seen))
    assert len(history) == 1 and len(seen) == 1
    assert len(fake_time.sleeps) >= 3


def test_run_waits_for_the_initial_model(client: Client, http):
    http.get(MODEL, status=409, json=error_body("MODEL_NOT_READY"))
    FakeServer(http, INITIAL, total_rounds=1)

    assert len(client.run(train([]))) == 1


def test_run_moves_on_when_its_round_closed_before_the_upload(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=2)
    server.close_next_put = True

    history = client.run(train([]))
    assert [(h["round"], h["status"]) for h in history] == [(1, "ROUND_CLOSED"), (2, "APPLIED")]


def test_run_stops_after_the_requested_number_of_rounds(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=5)

    assert len(client.run(train([]), rounds=1)) == 1
    assert server.current == 2 and server.status == "RUNNING"


def test_run_raises_when_an_update_is_rejected(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=2)
    server.reject_next = "tensor w: value not finite"

    with pytest.raises(UpdateRejected, match="not finite"):
        client.run(train([]))


def test_run_retrains_when_the_experiment_paused_between_fetch_and_submit(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=1)
    server.fail_next = (409, "EXPERIMENT_NOT_RUNNING")
    seen: list[dict] = []

    history = client.run(train(seen))
    assert [h["status"] for h in history] == ["APPLIED"]
    assert len(seen) == 2  # trained again once the experiment resumed


def test_run_raises_an_unexplained_conflict_instead_of_looping(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=2)
    server.fail_next = (409, "SOMETHING_ELSE")

    with pytest.raises(Conflict, match="SOMETHING_ELSE"):
        client.run(train([]))


def test_run_returns_when_the_experiment_was_stopped_while_it_trained(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=3)
    server.fail_next = (410, "EXPERIMENT_CLOSED")

    assert client.run(train([])) == []


def test_a_long_pause_does_not_time_out_the_wait_for_a_round(client: Client, http, fake_time):
    server = FakeServer(http, INITIAL, total_rounds=1)
    server.publish_after_polls = 8  # round 1 stays open a while (another client is slow)
    server.pause_while_open = True

    history = client.run(train([]), round_timeout=1)
    assert [h["round_metrics"] for h in history] == [{"loss": 0.1}]
    assert fake_time.now > 1  # the round wait outlived its timeout while paused


def test_run_in_async_mode_goes_straight_on_with_the_newest_model(client: Client, http):
    """No wait for a round to publish: the loop only waits for a version newer than its base."""
    server = FakeServer(http, INITIAL, total_rounds=3)
    server.mode = "async"
    server.publish_after_polls = 10**6  # polling the round would never see it published

    history = client.run(train([]))
    assert [(h["round"], h["status"]) for h in history] == [(1, "ACCEPTED"), (2, "ACCEPTED"), (3, "ACCEPTED")]
    assert all("round_metrics" not in h for h in history)
    assert [s["meta"]["fma.round"] for s in server.submitted] == ["1", "2", "3"]
    assert server.status == "COMPLETED"


def test_run_in_async_mode_records_a_stale_refusal_and_goes_on(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=2)
    server.mode = "async"
    server.reject_next = "STALE: trained on version 0, 3 versions behind version 3 (max_staleness=2)"

    def train_once_stale(weights, config):
        server.reject_next = server.reject_next if config["round"] == 1 else None
        return {k: v + 1.0 for k, v in weights.items()}, 10, {}

    history = client.run(train_once_stale, rounds=1)
    assert [(h["round"], h["status"]) for h in history] == [(1, "REJECTED")]
    assert history[0]["reason"].startswith("STALE:")
