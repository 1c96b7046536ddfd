"""End to end (issue 13 item 5): clients wait on the experiment's pointer object, served by the
gateway as CloudFront serves it on AWS, instead of polling the API."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests
from local_mode import local_mode

from fma_client import Client, Developer

pytestmark = pytest.mark.e2e

INITIAL = {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}


def _train(weights, config):
    return {k: v + 1.0 for k, v in weights.items()}, 4, {"loss": 0.5}


@pytest.mark.parametrize("backend", ["sqlite_fs", "aws-emulation"])
def test_the_pointer_follows_every_change_and_answers_304_while_unchanged(tmp_path, backend):
    with local_mode(tmp_path / "state", extra_args=("--backend", backend)) as (url, admin):
        dev = Developer(url, admin)
        exp = dev.create_experiment("ptr", INITIAL, rounds={"min_updates": 1, "total_rounds": 2})
        enroll = dev.enrollment_token(exp["id"], max_uses=2)["token"]
        reg = requests.post(f"{url}/v1/experiments/{exp['id']}/clients", json={},
                            headers={"Authorization": f"Bearer {enroll}"}, timeout=10).json()
        model = requests.get(f"{url}/v1/experiments/{exp['id']}/model",
                             headers={"Authorization": f"Bearer {reg['token']}"}, timeout=10).json()
        poll_url = model["poll_url"]
        assert poll_url == reg["poll_url"] and poll_url.startswith(f"{url}/pointers/{exp['id']}/")
        first = requests.get(poll_url, timeout=10)  # no token: the URL is the capability
        body, etag = first.json(), first.headers["ETag"]
        assert (body["status"], body["current_round"], body["model_version"]) == ("RUNNING", 1, 0)
        assert body["model_sha256"] == model["sha256"] and body["experiment_id"] == exp["id"]
        assert requests.get(poll_url, headers={"If-None-Match": etag}, timeout=10).status_code == 304
        guessed = poll_url.rsplit("/", 1)[0] + "/" + "0" * 32 + ".json"
        for bad in (guessed, f"{url}/pointers/{exp['id']}/../../models/x.json", f"{url}/pointers/"):
            assert requests.get(bad, timeout=10).status_code == 404
        dev.pause(exp["id"])
        paused = requests.get(poll_url, headers={"If-None-Match": etag}, timeout=10)
        assert paused.status_code == 200 and paused.json()["status"] == "PAUSED"
        client = Client(url, exp["id"], enrollment_token=enroll, poll_interval=0.05)
        api_calls: list[tuple] = []
        call = client.http.call
        client.http.call = lambda *a, **k: (api_calls.append(a[:2]), call(*a, **k))[1]
        runner = threading.Thread(target=lambda: history.extend(client.run(_train, rounds=2)))
        history: list[dict] = []
        runner.start()
        _until(lambda: client.pointer() is not None and client.pointer().requests >= 2)
        before_api, before_pointer = len(api_calls), client.pointer().requests
        time.sleep(1.5)  # paused: the client waits on the pointer, not on the API
        assert len(api_calls) == before_api and client.pointer().requests > before_pointer
        dev.resume(exp["id"])
        runner.join(60)
        assert not runner.is_alive()
        assert [h["round"] for h in history] == [1, 2]
        assert {h["status"] for h in history} <= {"ACCEPTED", "APPLIED"}
        final = requests.get(poll_url, timeout=10).json()
        assert (final["status"], final["model_version"]) == ("COMPLETED", 2)
        assert final["model_sha256"] == dev.experiment(exp["id"])["model_sha256"]


def _until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
