"""Starts `fma local up` as a subprocess on a free loopback port and stops it cleanly."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from fma.local.process import local_mode_process

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def local_mode(state_dir: Path, timeout: float = 60.0, kill: bool = False, stop_signal: int | None = None,
               extra_args: tuple[str, ...] = ()):
    """Yields (api_base_url, admin_token); the process is always stopped (SIGKILL with `kill`,
    to simulate a crash, or `stop_signal`)."""
    with local_mode_process(state_dir, cwd=ROOT, timeout=timeout, kill=kill, stop_signal=stop_signal,
                            extra_args=extra_args) as started:
        yield started
