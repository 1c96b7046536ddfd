"""Shared by the examples: the common flags, and an FMA to talk to.

With `--url` and `--admin-token` an example uses that deployment (or a `fma local up` you
started). Without them it starts local mode itself on a free loopback port, in a temporary
state directory, and stops it when the example ends, however it ends.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from fma.local.process import local_mode_process


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
    with tempfile.TemporaryDirectory(prefix="fma-example-") as state, local_mode_process(state) as (url, token):
        print(f"started FMA local mode at {url}", flush=True)
        yield url, token
