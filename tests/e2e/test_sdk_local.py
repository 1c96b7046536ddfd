"""The SDK against a real local mode: a client rides out a restart of the server on its default
retry policy, a restarted client resumes its saved registration without using the enrollment
token again, and the first errors a user meets read clearly."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from local_mode import ROOT

from fma.local.process import local_mode_process
from fma_client import Client, Developer, Forbidden, NotFound

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_client_rides_out_a_restart_and_a_new_process_resumes_its_registration(tmp_path):
    state, port, saved = tmp_path / "state", free_port(), tmp_path / "client.json"
    args = ["--port", str(port)]
    with local_mode_process(state, extra_args=args, cwd=ROOT) as (url, admin):
        dev = Developer(url, admin)
        exp = dev.create_experiment("restart", {"w": np.zeros(3, np.float32)}, rounds={"min_updates": 1})
        enroll = dev.enrollment_token(exp["id"], max_uses=1)["token"]
        client = Client(url, exp["id"], enrollment_token=enroll, registration_file=saved)
        client.get_model()
        first_id = client.client_id
        with pytest.raises(Forbidden, match="max_uses"):  # the token's one use is spent
            Client(url, exp["id"], enrollment_token=enroll, persist_registration=False).get_model()
        with pytest.raises(NotFound, match="not found"):
            dev.experiment("no-such-experiment")

    outcome: dict = {}

    def poll_through_the_outage() -> None:
        started = time.monotonic()
        try:
            outcome["round"] = client.get_model()[1]
        except Exception as exc:  # reported below
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=poll_through_the_outage)
    worker.start()  # the server is down: the call retries with backoff
    time.sleep(2.0)  # let it meet the refused connections before the server is back
    with local_mode_process(state, extra_args=args, cwd=ROOT) as (url2, _):
        worker.join(timeout=120)
        assert "error" not in outcome, outcome
        assert outcome["round"] == 1 and outcome["seconds"] >= 2.0
        print(f"rode out a restart of {outcome['seconds']:.1f} s")

        client.close()  # the client process "restarts": a new Client with the same file
        again = Client(url2, exp["id"], enrollment_token=enroll, registration_file=saved)
        weights, n, _ = again.get_model()  # the exhausted token is not needed: the saved registration is
        assert again.client_id == first_id and n == 1
        assert again.submit({"w": weights["w"] + 1}, num_examples=2)["status"] in ("ACCEPTED", "APPLIED")
