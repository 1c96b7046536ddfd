"""Run in a subprocess by test_agg_memory.py: aggregate K updates of an N-parameter float32
model whose ranged reads allocate fresh bytes (as S3 GETs do), and print the tracemalloc peak
above the baseline (global model and the update bytes already in memory)."""

from __future__ import annotations

import json
import sys
import tracemalloc

import numpy as np

from fma.domain.aggregation import EngineOptions, UpdateInput, aggregate
from fma.domain.codec import encode


def main(strategy: str, k: int, n: int, shard_bytes: int) -> None:
    tracemalloc.start()
    rng = np.random.default_rng(0)
    g = {"big": np.zeros(n - 1000, np.float32), "small": np.zeros(1000, np.float32)}
    base = {"big": rng.standard_normal(n - 1000).astype(np.float32),
            "small": rng.standard_normal(1000).astype(np.float32)}
    data = memoryview(encode(base))
    updates = [
        UpdateInput(f"c{i:03d}", i + 1, "0" * 64, len(data), lambda: bytes(data),
                    lambda a, b: bytes(data[a:b]))
        for i in range(k)
    ]
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    out = aggregate(strategy, {}, g, updates, {}, round_number=1,
                    options=EngineOptions(shard_bytes=shard_bytes))
    _, peak = tracemalloc.get_traced_memory()
    err = max(float(np.max(np.abs(out.model[t] - base[t]))) for t in g)
    print(json.dumps({"peak_extra": peak - before, "model_bytes": 4 * n, "max_err": err,
                      "bytes_read": out.info["bytes_read"]}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
