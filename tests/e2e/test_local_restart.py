"""Local mode keeps its data: after a clean stop or a crash, the same --state-dir shows the same
experiments, rounds and models."""

from __future__ import annotations

import numpy as np
import pytest
from local_mode import local_mode

from fma_client import Client, Developer

pytestmark = pytest.mark.e2e


def snapshot(dev: Developer, exp_id: str) -> tuple:
    exp = dev.experiment(exp_id)
    rounds = [(r["round"], r["state"], r["accepted"], r["model_sha256"]) for r in dev.rounds(exp_id)]
    return exp["status"], exp["current_round"], exp["model_version"], rounds


@pytest.mark.parametrize("crash", [False, True], ids=["clean-stop", "crash"])
def test_state_survives_restart(tmp_path, crash):
    state = tmp_path / "state"
    initial = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    with local_mode(state, kill=crash) as (url, admin):
        dev = Developer(url, admin)
        exp = dev.create_experiment("persist", initial, rounds={"min_updates": 2, "total_rounds": 3})
        enroll = dev.enrollment_token(exp["id"], max_uses=2)["token"]
        clients = [Client(url, exp["id"], enrollment_token=enroll) for _ in range(2)]
        for i, c in enumerate(clients):
            weights, n, _ = c.get_model()
            c.submit({"w": weights["w"] + i + 1}, num_examples=3 + i)
        clients[0].wait_for_round(1, timeout=60)
        before = snapshot(dev, exp["id"])
        model_before = dev.download_model(exp["id"], 1)
        client_token = clients[0].token
    assert before[3][0][1] == "PUBLISHED"
    with local_mode(state) as (url2, admin2):
        assert admin2 == admin  # the admin token is kept in the state dir
        dev = Developer(url2, admin2)
        assert [e["id"] for e in dev.experiments()] == [exp["id"]]
        assert snapshot(dev, exp["id"]) == before
        np.testing.assert_array_equal(dev.download_model(exp["id"], 1)["w"], model_before["w"])
        # and the experiment carries on: round 2 with the clients' old tokens
        again = Client(url2, exp["id"], token=client_token)
        weights, n, _ = again.get_model()
        assert n == 2
