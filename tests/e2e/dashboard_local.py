"""Local mode as a subprocess on loopback, and a small seeded experiment for the dashboard tests.

Kept apart from the test so a human can reuse it: `python tests/e2e/dashboard_local.py` starts
local mode, seeds the experiment, prints the URL and an analyst token, and waits for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: SIGTERM the child if the test process itself dies without running finalizers."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def fma_command() -> list[str]:
    script = Path(sys.executable).with_name("fma")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fma.cli"]


@dataclass
class LocalMode:
    """`fma local up` in its own process group; `stop()` is safe to call twice."""

    url: str
    admin_token: str
    process: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, state_dir: Path, timeout: float = 90.0, extra_args: tuple[str, ...] = ()) -> LocalMode:
        port = free_port()
        log_path = state_dir / "local-mode.log"
        log = log_path.open("wb")
        # the test session's fake AWS_* / FMA_* settings belong to moto-in-process tests
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FMA_"))}
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [*fma_command(), "local", "up", "--host", HOST, "--port", str(port), "--state-dir", str(state_dir),
               *extra_args]
        process = subprocess.Popen(
            cmd,
            stdout=log,  # the child keeps its own copy of the descriptor
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        log.close()
        mode = cls(f"http://{HOST}:{port}", "", process, log_path)
        try:
            mode._wait_ready(state_dir / "admin-token", timeout)
        except BaseException:
            mode.stop()
            raise
        return mode

    def _wait_ready(self, token_file: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        http = requests.Session()
        http.trust_env = False  # loopback only: never through a proxy from the environment
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fma local up exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                healthy = http.get(f"{self.url}/v1/health", timeout=2).status_code == 200
            except requests.RequestException:
                healthy = False
            if healthy and token_file.exists() and token_file.read_text().strip():
                self.admin_token = token_file.read_text().strip()
                return
            time.sleep(0.3)
        raise TimeoutError(f"local mode not ready after {timeout:g}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process group (clean shutdown), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@dataclass
class Seeded:
    experiment_id: str
    name: str
    analyst_token: str
    developer_token: str
    rejected_client: str
    rejected_reason: str


def seed_experiment(url: str, admin_token: str, rounds: int = 3) -> Seeded:
    """Run a `rounds`-round FedAvg experiment with two clients, plus one client whose update
    has the wrong shape in round 1 (REJECTED), and federated evaluations after each round."""
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
    clients = [Client(url, exp["id"], enrollment_token=enroll, name=f"site-{i}", poll_interval=0.3) for i in (1, 2)]
    bad = Client(url, exp["id"], enrollment_token=enroll, name="site-bad")
    reason = ""
    for n in range(1, rounds + 1):
        if n == 1:
            bad.get_model()
            wrong = {"dense/kernel": np.ones((3, 3), np.float32), "dense/bias": np.ones(2, np.float32)}
            try:
                bad.submit(wrong, 10, {"loss": 9.0}, round=1, timeout=60)
            except UpdateRejected as exc:
                reason = exc.reason or ""
        for i, client in enumerate(clients):
            weights, current, _ = client.get_model()
            assert current == n, f"expected round {n}, server says {current}"
            step = {k: v + 0.1 * (i + 1) for k, v in weights.items()}
            loss, acc = 1.0 / (n + i), 0.5 + 0.1 * n + 0.02 * i
            client.submit(step, 50 + 25 * i, {"loss": loss, "accuracy": acc}, timeout=60)
        clients[0].wait_for_round(n, timeout=120)
        for i, client in enumerate(clients):
            client.evaluate(n, 20 + 10 * i, {"loss": 1.2 / (n + i), "accuracy": 0.45 + 0.12 * n})
    return Seeded(exp["id"], name, analyst, developer_token, bad.client_id or "", reason)


def main() -> int:
    state = Path(tempfile.mkdtemp(prefix="fma-dashboard-"))
    mode = LocalMode.start(state)
    try:
        seeded = seed_experiment(mode.url, mode.admin_token)
        print(
            f"dashboard: {mode.url}/\nanalyst token: {seeded.analyst_token}\nexperiment: {seeded.experiment_id}",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        mode.stop()


if __name__ == "__main__":
    sys.exit(main())
