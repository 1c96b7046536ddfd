"""`fma local up` as a child process, for tests, examples and benchmarks.

One place that starts it on a free loopback port, reads the URL and admin token from its
banner, keeps draining its output (a chatty server must never block on a full pipe), and
always stops it: SIGTERM for a clean stop, SIGKILL to simulate a crash, SIGKILL if it lingers.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def fma_command() -> list[str]:
    script = Path(sys.executable).with_name("fma")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fma.cli"]


@contextmanager
def local_mode_process(state_dir: Path | str, *, extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                       cwd: Path | str | None = None, timeout: float = 60.0,
                       kill: bool = False, stop_signal: int | None = None) -> Iterator[tuple[str, str]]:
    """Yields `(base_url, admin_token)`; the caller's AWS_*/FMA_* variables are not passed on.

    It is stopped with `stop_signal` if given, else SIGKILL with `kill` (a crash), else SIGTERM.
    """
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FMA_"))}
    child_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    cmd = [*fma_command(), "local", "up", "--host", "127.0.0.1", "--port", "0", "--state-dir", str(state_dir),
           *extra_args]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env)
    tail: collections.deque[str] = collections.deque(maxlen=50)
    try:
        url, token = _read_banner(proc, tail, timeout)
        threading.Thread(target=lambda: tail.extend(proc.stdout), daemon=True).start()
        yield url, token
    finally:
        proc.send_signal(stop_signal or (signal.SIGKILL if kill else signal.SIGTERM))
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_banner(proc: subprocess.Popen, tail: collections.deque[str], timeout: float) -> tuple[str, str]:
    url = token = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (url and token):
        line = proc.stdout.readline()
        if not line:
            break
        tail.append(line)
        if m := re.search(r"API:\s+(\S+?)/v1", line):
            url = m.group(1)
        if m := re.search(r"Admin token:\s+(\S+)", line):
            token = m.group(1)
    if not (url and token):
        raise RuntimeError("fma local mode did not start:\n" + "".join(tail))
    return url, token
