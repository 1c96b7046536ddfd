"""Local mode (started by fma.local.process) and small seeded experiments for the dashboard tests.

Kept apart from the test so a human can reuse it: `python tests/e2e/dashboard_local.py` starts
local mode, seeds the experiments, prints the URL and an analyst token, and waits for Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from fma.local.process import fma_command, local_mode_process  # noqa: F401 (fma_command: for tests importing it from here)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalMode:
    """`fma local up` started by fma.local.process; `stop()` is safe to call twice."""

    url: str
    admin_token: str
    _running: ExitStack | None = None

    @classmethod
    def start(cls, state_dir: Path, timeout: float = 90.0, extra_args: tuple[str, ...] = ()) -> LocalMode:
        running = ExitStack()
        url, token = running.enter_context(local_mode_process(state_dir, cwd=ROOT, timeout=timeout,
                                                              extra_args=extra_args))
        return cls(url, token, running)

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None


@contextmanager
def running_local_mode(state_dir: Path, timeout: float = 90.0,
                       extra_args: tuple[str, ...] = ()) -> Iterator[LocalMode]:
    """`fma local up` on a free loopback port for the duration of the block."""
    mode = LocalMode.start(state_dir, timeout, extra_args)
    try:
        yield mode
    finally:
        mode.stop()


@dataclass
class Seeded:
    experiment_id: str
    name: str
    analyst_token: str
    developer_token: str
    rejected_client: str
    rejected_reason: str
    slow_client: str
    deadline_experiment_id: str


def _raw_put(url: str, experiment_id: str, n: int, token: str) -> requests.Response:
    """An update PUT outside the SDK (which would wait and retry): the refusal is what we want."""
    from fma.domain.codec import encode

    body = encode({"dense/kernel": np.zeros((4, 2), np.float32), "dense/bias": np.zeros(2, np.float32)},
                  {"fma.num_examples": "5", "fma.round": str(n)})
    http = requests.Session()
    http.trust_env = False  # loopback only
    return http.put(f"{url}/v1/experiments/{experiment_id}/rounds/{n}/updates", data=body, timeout=30,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"})


def seed_experiment(url: str, admin_token: str, rounds: int = 3) -> Seeded:
    """A `rounds`-round FedAvg experiment with two clients and federated evaluations from round
    0 on; one client whose update has the wrong shape in round 1 (REJECTED); one that uploads
    after round 2 is sealed (refused, LATE) and is refused again while the experiment is paused
    in round 3; and a one-round experiment sealed by its deadline."""
    from fma_client import Client, Developer, UpdateRejected

    admin = Developer(url, admin_token)
    developer_token = admin.create_token("developer", name="dashboard-dev")["token"]
    developer = Developer(url, developer_token)
    analyst = admin.create_token("analyst", name="dashboard-analyst")["token"]
    initial = {"dense/kernel": np.zeros((4, 2), np.float32), "dense/bias": np.zeros(2, np.float32)}
    name = "digits-dashboard"
    exp = developer.create_experiment(
        name,
        initial,
        strategy="fedavg",
        rounds={"min_updates": 2, "total_rounds": rounds, "deadline_seconds": 600},
        client_config={"lr": 0.1},
    )
    enroll = developer.enrollment_token(exp["id"], max_uses=5)["token"]
    memory = {"persist_registration": False}  # seeded clients leave nothing in the user's config folder
    clients = [Client(url, exp["id"], enrollment_token=enroll, name=f"site-{i}", poll_interval=0.3, **memory)
               for i in (1, 2)]
    bad = Client(url, exp["id"], enrollment_token=enroll, name="site-bad", **memory)
    slow = Client(url, exp["id"], enrollment_token=enroll, name="site-slow", **memory)
    slow.register()
    reason = ""
    for i, client in enumerate(clients):
        client.get_model()
        client.evaluate(0, 20 + 10 * i, {"loss": 2.0 + 0.1 * i, "accuracy": 0.3 + 0.05 * i})
    for n in range(1, rounds + 1):
        if n == 1:
            bad.get_model()
            wrong = {"dense/kernel": np.ones((3, 3), np.float32), "dense/bias": np.ones(2, np.float32)}
            try:
                bad.submit(wrong, 10, {"loss": 9.0}, round=1, timeout=60)
            except UpdateRejected as exc:
                reason = exc.reason or ""
        if n == 3:  # a pause turns the slow client's work away, then the round goes on
            developer.pause(exp["id"])
            assert _raw_put(url, exp["id"], n, slow.token).status_code == 409
            developer.resume(exp["id"])
        for i, client in enumerate(clients):
            weights, current, _ = client.get_model()
            assert current == n, f"expected round {n}, server says {current}"
            step = {k: v + 0.1 * (i + 1) for k, v in weights.items()}
            loss, acc = 1.0 / (n + i), 0.5 + 0.1 * n + 0.02 * i
            client.submit(step, 50 + 25 * i, {"loss": loss, "accuracy": acc}, timeout=60)
        clients[0].wait_for_round(n, timeout=120)
        if n == 2:  # too late for round 2: refused with ROUND_CLOSED and counted late
            assert _raw_put(url, exp["id"], n, slow.token).status_code == 409
        for i, client in enumerate(clients):
            client.evaluate(n, 20 + 10 * i, {"loss": 1.2 / (n + i), "accuracy": 0.45 + 0.12 * n})
    deadline_id = seed_deadline_experiment(url, developer)
    return Seeded(exp["id"], name, analyst, developer_token, bad.client_id or "", reason, slow.client_id or "",
                  deadline_id)


def seed_deadline_experiment(url: str, developer, timeout: float = 120.0) -> str:
    """One round that only one of two needed clients joins: the sweeper seals it at its deadline."""
    from fma_client import Client

    exp = developer.create_experiment(
        "deadline-demo", {"w": np.zeros(2, np.float32)},
        rounds={"min_updates": 2, "total_rounds": 1, "deadline_seconds": 1, "min_updates_at_deadline": 1})
    enroll = developer.enrollment_token(exp["id"], max_uses=1)["token"]
    client = Client(url, exp["id"], enrollment_token=enroll, poll_interval=0.5, persist_registration=False)
    weights, _, _ = client.get_model()
    client.submit({"w": weights["w"] + 1}, 10, {"loss": 0.5}, timeout=60)
    client.wait_for_round(1, timeout=timeout)
    return exp["id"]


def main() -> int:
    state = Path(tempfile.mkdtemp(prefix="fma-dashboard-"))
    with running_local_mode(state) as mode:
        seeded = seed_experiment(mode.url, mode.admin_token)
        print(
            f"dashboard: {mode.url}/\nanalyst token: {seeded.analyst_token}\nexperiment: {seeded.experiment_id}",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
