"""`fma demo --async` (issue 15): three experiments on local mode with 6 real SDK clients each
(`Client.run` unchanged in async mode), 2 of them slower; every run completes and the
comparison table names the time-to-target ratio. Speed itself is a benchmark, not asserted."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_async_demo_runs_sync_and_async_to_completion_and_prints_the_ratio(tmp_path):
    cmd = [str(ROOT / ".venv" / "bin" / "fma"), "demo", "--async", "--quick", "--rounds", "1", "--port", "0",
           "--state-dir", str(tmp_path / "state")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for label, versions in (("sync, quota 6", 1), ("sync, quota 4", 3), ("async, K=3", 4)):
        row = re.search(rf"^  {re.escape(label)}\s+(\d+)\s", proc.stdout, re.M)
        assert row and int(row.group(1)) == versions, proc.stdout[-3000:]
    assert re.search(r"^ASYNC_RATIO time_to_target async/sync_quota_6=(\d+\.\d+|never)", proc.stdout, re.M)
