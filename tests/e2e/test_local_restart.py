"""Local mode keeps its data: after a clean stop or a crash, the same --state-dir shows the same
experiments, rounds and models."""

from __future__ import annotations

import signal

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


#: example counts whose FedAvg weights (1/8, 1/8, 1/4, 1/2) and integer-valued tensors make the
#: weighted mean exact, whatever order the server adds the updates in (client ids differ per run).
EXAMPLES = (1, 1, 2, 4)


def _weights(i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + i)
    return {"dense/kernel": rng.integers(-64, 64, size=(50, 20)).astype(np.float32),
            "dense/bias": rng.integers(-64, 64, size=20).astype(np.float32)}


def _round_one(url: str, admin: str):
    """The experiment of these runs: FedAvg, 4 updates seal round 1, 4 enrolled clients."""
    dev = Developer(url, admin)
    exp = dev.create_experiment("restart", _weights(-1), rounds={"min_updates": 4, "total_rounds": 2})
    enroll = dev.enrollment_token(exp["id"], max_uses=4)["token"]
    clients = [Client(url, exp["id"], enrollment_token=enroll, direct_upload_limit=0 if i % 2 else 1 << 30)
               for i in range(4)]
    for c in clients:
        c.get_model()
    return dev, exp["id"], clients


def _submit(client: Client, i: int, wait: bool) -> None:
    client.submit(_weights(i), num_examples=EXAMPLES[i], round=1, wait=wait)


def test_reference_run_and_crash_mid_round_publish_the_same_model(tmp_path):
    """SIGKILL after two updates (one ACCEPTED, one only acknowledged by the upload), restart,
    the other two updates: round 1 publishes the model a run without the crash publishes."""
    with local_mode(tmp_path / "reference") as (url, admin):
        dev, exp_id, clients = _round_one(url, admin)
        for i, c in enumerate(clients):
            _submit(c, i, wait=False)
        clients[0].wait_for_round(1, timeout=60)
        reference = dev.download_model(exp_id, 1)
    for stop in (signal.SIGKILL, signal.SIGINT):
        state = tmp_path / f"crash-{stop.name}"
        with local_mode(state, stop_signal=stop) as (url, admin):
            dev, exp_id, clients = _round_one(url, admin)
            _submit(clients[0], 0, wait=True)
            _submit(clients[1], 1, wait=False)  # acknowledged (the upload returned), maybe not ingested
            tokens = [c.token for c in clients]
        with local_mode(state) as (url2, admin2):
            again = [Client(url2, exp_id, token=t) for t in tokens]
            for i in (2, 3):
                _submit(again[i], i, wait=False)
            result = again[0].wait_for_round(1, timeout=90)
            assert result["accepted"] == 4, result
            crashed = Developer(url2, admin2).download_model(exp_id, 1)
        assert crashed.keys() == reference.keys()
        for name in reference:
            np.testing.assert_array_equal(crashed[name], reference[name], err_msg=f"{stop.name}: {name}")


def test_state_dir_holds_only_the_database_and_objects(tmp_path):
    state = tmp_path / "state"
    with local_mode(state) as (url, admin):
        dev = Developer(url, admin)
        dev.create_experiment("files", {"w": np.ones(3, np.float32)}, rounds={"min_updates": 1, "total_rounds": 1})
    names = {p.name for p in state.iterdir()}
    data = {"fma.sqlite3", "fma.sqlite3-wal", "fma.sqlite3-shm", "objects"}
    assert names <= data | {"admin-token", "dp-noise.key"}, names  # the two secrets are files of their own
    assert not list(state.rglob("*.jsonl"))
