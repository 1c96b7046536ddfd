"""End to end: local mode over real HTTP with three SDK clients through two rounds."""

from __future__ import annotations

import numpy as np
import pytest
from local_mode import local_mode

from fma_client import Client, Developer, UpdateRejected

pytestmark = pytest.mark.e2e


def test_three_sdk_clients_two_rounds_weighted_mean_and_rejection(tmp_path):
    rng = np.random.default_rng(7)
    initial = {"dense/kernel": rng.normal(size=(8, 4)).astype(np.float32), "dense/bias": np.zeros(4, np.float32)}
    with local_mode(tmp_path / "state") as (url, admin):
        dev = Developer(url, admin)
        exp = dev.create_experiment("e2e", initial, strategy="fedavg", rounds={"min_updates": 3, "total_rounds": 2})
        enroll = dev.enrollment_token(exp["id"], max_uses=4)["token"]
        clients = [Client(url, exp["id"], enrollment_token=enroll) for _ in range(3)]
        for c in clients:
            c.register()
        for n in (1, 2):
            sent = []
            for i, c in enumerate(clients):
                weights, round_, _ = c.get_model()
                assert round_ == n
                new = {k: (v + rng.normal(size=v.shape)).astype(np.float32) for k, v in weights.items()}
                sent.append((new, 5 + i))
                c.submit(new, num_examples=5 + i, metrics={"loss": 1.0 / n})
            clients[0].wait_for_round(n, timeout=60)
            published = dev.download_model(exp["id"], n)
            total = sum(w for _, w in sent)
            for name, arr in published.items():
                expected = sum(t[name].astype(np.float64) * w for t, w in sent) / total
                np.testing.assert_allclose(arr, expected, rtol=1e-6, atol=1e-6)
        exp2 = dev.create_experiment("e2e-bad", initial, rounds={"min_updates": 2, "total_rounds": 1})
        enroll2 = dev.enrollment_token(exp2["id"], max_uses=1)["token"]
        bad = Client(url, exp2["id"], enrollment_token=enroll2)
        bad.register()
        with pytest.raises(UpdateRejected) as info:
            bad.submit({"dense/kernel": np.zeros((3, 3), np.float32), "dense/bias": np.zeros(4, np.float32)},
                       num_examples=3, round=1)
        assert "WRONG_SHAPE" in str(info.value)
        [r1] = dev.rounds(exp2["id"])
        assert r1["rejected"] == 1 and r1["updates"][0]["status"] == "REJECTED"
        assert "WRONG_SHAPE" in r1["updates"][0]["reason"]
