"""Shared by the examples: the common flags, and an FMA to talk to.

With `--url` and `--admin-token` an example uses that deployment (or a `fma local up` you
started). Without them it starts local mode itself on a free loopback port, in a temporary
state directory, and stops it when the example ends, however it ends.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", help="FMA API, e.g. http://127.0.0.1:8080 (default: start local mode)")
    p.add_argument("--admin-token", help="admin or developer token for --url")
    p.add_argument("--quick", action="store_true", help="a small run that finishes in seconds (CI)")
    return p


@contextmanager
def fma(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """Yields `(url, token)`: the given deployment, or a local mode started for this run."""
    if args.url or args.admin_token:
        if not (args.url and args.admin_token):
            raise SystemExit("--url and --admin-token go together")
        yield args.url, args.admin_token
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below on SIGTERM too
    with tempfile.TemporaryDirectory(prefix="fma-example-") as state:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fma.cli", "local", "up", "--port", "0", "--state-dir", state],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            url, token = _read_banner(proc)
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
            print(f"started FMA local mode at {url}", flush=True)
            yield url, token
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _read_banner(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[str, str]:
    url = token = None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (url and token):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"API:\s+(\S+?)/v1", line):
            url = m.group(1)
        if m := re.search(r"Admin token:\s+(\S+)", line):
            token = m.group(1)
    if not (url and token):
        raise RuntimeError("FMA local mode did not start (is `pip install -e '.[local]'` done?):\n" + "".join(lines))
    return url, token
