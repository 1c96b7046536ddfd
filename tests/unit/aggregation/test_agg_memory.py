"""Peak extra memory of a round, measured with tracemalloc in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).with_name("agg_memory_probe.py")


def probe(strategy: str, k: int, n: int, shard_bytes: int = 64 << 20) -> dict:
    out = subprocess.run([sys.executable, str(PROBE), strategy, str(k), str(n), str(shard_bytes)],
                         capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout)


def test_fedavg_of_40_clients_of_10m_parameters_peaks_under_3x_the_model():
    r = probe("fedavg", 40, 10_000_000)
    assert r["bytes_read"] >= 40 * r["model_bytes"]  # every update was really read
    assert r["max_err"] < 1e-5  # the mean of identical updates is that update
    assert r["peak_extra"] < 3 * r["model_bytes"], r


def test_median_memory_follows_the_shard_size_not_clients_times_model():
    shard = 256 << 10
    r = probe("fedmedian", 20, 2_000_000, shard)
    assert r["max_err"] == 0.0
    # the output vector plus a few clients x shard blocks (5 MB each); clients x model is 160 MB
    assert r["peak_extra"] < r["model_bytes"] + 3 * 20 * shard, r
