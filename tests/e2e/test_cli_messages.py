"""`fma local up` and `fma demo` on a port that is taken: one line that says so, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from local_mode import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", [["local", "up"], ["demo", "--quick"]])
def test_a_busy_port_is_one_line_and_exit_code_1(busy_port, tmp_path, command):
    args = [sys.executable, "-m", "fma.cli", *command, "--port", str(busy_port), "--state-dir", str(tmp_path)]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)

    name = "fma local up" if command[0] == "local" else "fma demo"
    assert proc.returncode == 1
    assert proc.stderr == (
        f"{name}: port {busy_port} on 127.0.0.1 is already in use (another `fma local up`?); "
        "stop that process or choose another port with --port\n"
    )
    assert "Traceback" not in proc.stdout + proc.stderr
