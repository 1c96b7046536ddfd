"""The SDK's multipart path against a real local mode (sqlite_fs) with a 1 MiB
threshold and 256 KiB parts: the developer's 6 MB initial model and a client's 6 MB update go
as multipart uploads; a client killed after a few parts (an exception injected into its HTTP
session) and started again sends only the parts the server does not hold, completes, and the
published model is exactly the update."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import requests
from local_mode import ROOT

from fma.local.process import local_mode_process
from fma_client import Client, Developer

pytestmark = pytest.mark.e2e
ENV = {"FMA_MULTIPART_THRESHOLD_BYTES": str(1 << 20), "FMA_MULTIPART_PART_BYTES": str(256 << 10)}
N = 1_500_000  # float32: 6 MB, 23 parts


class Killed(Exception):
    """Not a connection error: the transport does not retry it (the process "dies")."""


class CountingSession(requests.Session):
    """Counts part PUTs; with `die_after`, raises Killed on the PUT after that many."""

    def __init__(self, die_after: int | None = None):
        super().__init__()
        self.puts, self.die_after, self.lock = 0, die_after, threading.Lock()

    def request(self, method, url, *args, **kwargs):
        if method == "PUT" and "/objects/parts" in url:
            with self.lock:
                if self.die_after is not None and self.puts >= self.die_after:
                    raise Killed("killed mid-upload")
                self.puts += 1
        return super().request(method, url, *args, **kwargs)


def held_parts(url: str, exp_id: str, token: str, update_id: str) -> list[int]:
    got = requests.get(f"{url}/v1/experiments/{exp_id}/rounds/1/updates/{update_id}/parts",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert got.status_code == 200, got.text
    return [p["part_number"] for p in got.json()["uploaded"]]


@pytest.mark.parametrize("backend", ["sqlite_fs", "aws-emulation"])
def test_a_killed_multipart_upload_resumes_without_resending_finished_parts(tmp_path, backend):
    initial = {"w": np.zeros(N, np.float32)}
    trained = {"w": (np.arange(N, dtype=np.float32) % 977) / 977}
    # aws-emulation: moto's S3 behind the gateway's part grants (moto's 5 MiB part minimum lowered)
    env = {**ENV, "S3_UPLOAD_PART_MIN_SIZE": str(256 << 10)}
    with local_mode_process(tmp_path / "state", env=env, cwd=ROOT, extra_args=("--backend", backend)) as (url, admin):
        dev = Developer(url, admin)
        exp = dev.create_experiment("mp", initial, rounds={"min_updates": 1, "total_rounds": 1})
        assert exp["status"] == "RUNNING"
        enroll = dev.enrollment_token(exp["id"], max_uses=1)["token"]
        saved = tmp_path / "client.json"

        first = Client(url, exp["id"], enrollment_token=enroll, registration_file=saved,
                       session=CountingSession(die_after=5), upload_workers=2)
        first.get_model()
        with pytest.raises(Killed):
            first.submit(trained, num_examples=10, wait=False)
        update_id = f"1:{first.client_id}"
        held = held_parts(url, exp["id"], first.token, update_id)
        part_count = first.last_upload.state["part_count"]
        assert 0 < len(held) < part_count and (tmp_path / "client.upload.json").exists()
        first.close()

        session = CountingSession()
        second = Client(url, exp["id"], enrollment_token=enroll, registration_file=saved, session=session,
                        upload_workers=2)
        second.get_model()
        result = second.submit(trained, num_examples=10, wait=True, timeout=120)
        assert result["status"] in ("ACCEPTED", "APPLIED")  # APPLIED once the round aggregated
        assert session.puts == second.last_upload.sent == part_count - len(held)  # only the missing parts
        assert not (tmp_path / "client.upload.json").exists()
        second.wait_for_round(1, timeout=120)
        weights, _, _ = second.get_model()
        assert weights["w"].dtype == np.float32 and np.array_equal(weights["w"], trained["w"])
