"""Starts `fma local up` as a subprocess on a free loopback port and stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FMA = Path(sys.executable).with_name("fma")


@contextmanager
def local_mode(state_dir: Path, timeout: float = 60.0, kill: bool = False):
    """Yields (api_base_url, admin_token); the process is always stopped (SIGKILL with `kill`,
    to simulate a crash)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FMA_"))}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([str(FMA), "local", "up", "--port", "0", "--state-dir", str(state_dir)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = token = None
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline and not (url and token):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if m := re.search(r"API:\s+(\S+)/v1", line):
                url = m.group(1)
            if m := re.search(r"Admin token:\s+(\S+)", line):
                token = m.group(1)
        if not (url and token):
            raise RuntimeError("local mode did not start:\n" + "".join(lines))
        yield url, token
    finally:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
