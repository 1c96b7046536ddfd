"""End to end: local mode over real HTTP with three SDK clients through two rounds."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from local_mode import local_mode

from fma_client import Client, Developer, UpdateRejected
from fma_client.tensors import encode

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", ["sqlite_fs", "aws-emulation"])
def test_three_sdk_clients_two_rounds_weighted_mean_and_rejection(tmp_path, backend):
    rng = np.random.default_rng(7)
    initial = {"dense/kernel": rng.normal(size=(8, 4)).astype(np.float32), "dense/bias": np.zeros(4, np.float32)}
    with local_mode(tmp_path / "state", extra_args=("--backend", backend)) as (url, admin):
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


@pytest.mark.parametrize("backend", ["sqlite_fs", "aws-emulation"])
def test_clients_are_only_ever_given_the_gateway(tmp_path, backend):
    """Upload and download URLs point at the gateway (never a store endpoint) and carry a grant
    for one object: the same grant cannot fetch another key."""
    with local_mode(tmp_path / "state", extra_args=("--backend", backend)) as (url, admin):
        headers = {"Authorization": f"Bearer {admin}"}
        created = requests.post(f"{url}/v1/experiments", json={"name": "grants"}, headers=headers, timeout=10).json()
        exp_id, upload = created["experiment"]["id"], created["upload"]
        assert upload["url"].startswith(f"{url}/objects?grant=")
        assert upload["fields"] == {"key": f"models/{exp_id}/00000000.safetensors"}
        model = encode({"w": np.arange(4, dtype=np.float32)}, {})
        Developer(url, admin, direct_upload_limit=0)._upload_model(exp_id, upload, model)
        deadline = time.monotonic() + 30
        while (reply := requests.get(f"{url}/v1/experiments/{exp_id}/models/0", headers=headers, timeout=10)
               ).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        download = reply.json()["url"]
        assert download.startswith(f"{url}/objects/")
        assert requests.get(download.replace("00000000", "00000001"), timeout=10).status_code == 403
        assert requests.get(download, timeout=10).content == model
