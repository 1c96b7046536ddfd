"""`make demo` in its quick mode, as CI runs it: the accuracy line must show federated learning
beating every client's local-only model."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_quick_demo_prints_accuracy_and_federated_beats_local(tmp_path):
    args = f"--rounds 2 --quick --port 0 --state-dir {tmp_path / 'state'}"
    proc = subprocess.run(["make", "--no-print-directory", "demo", f"ARGS={args}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = re.search(r"ACCURACY federated=([\d.]+) centralized=([\d.]+) best_local=([\d.]+)", proc.stdout)
    assert m, proc.stdout[-3000:]
    federated, centralized, best_local = map(float, m.groups())
    assert federated > best_local
    assert federated > 0.6 and centralized > 0.85
    assert "round 2/2 published" in proc.stdout
    assert "Dashboard: http" not in proc.stdout  # without --keep the stack is down: no URL to a dead page
    assert "run the demo with --keep" in proc.stdout
