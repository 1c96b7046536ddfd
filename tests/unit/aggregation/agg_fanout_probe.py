"""Run in a subprocess by test_agg_fanout.py: one fanout child (piece 0 of pass 0) over K
updates of an N-parameter float32 model whose ranged reads allocate fresh bytes (as S3 GETs
do); prints the tracemalloc peak above the baseline (global model and update bytes)."""

from __future__ import annotations

import json
import sys
import tracemalloc

import numpy as np

from fma.domain.aggregation import EngineOptions, Partitioning, UpdateInput
from fma.domain.aggregation.fanout import RoundInputs, compute_piece


def main(strategy: str, k: int, n: int, partition_updates: int, shard_bytes: int) -> None:
    tracemalloc.start()
    rng = np.random.default_rng(0)
    g = {"big": np.zeros(n - 1000, np.float32), "small": np.zeros(1000, np.float32)}
    from fma.domain.codec import encode

    data = memoryview(encode({"big": rng.standard_normal(n - 1000).astype(np.float32),
                              "small": rng.standard_normal(1000).astype(np.float32)}))
    updates = [UpdateInput(f"c{i:05d}", i + 1, "0" * 64, len(data), lambda: bytes(data),
                           lambda a, b: bytes(data[a:b])) for i in range(k)]
    inputs = RoundInputs(strategy, {}, g, updates, {}, round_number=1,
                         options=EngineOptions(shard_bytes=256 << 10),
                         partitioning=Partitioning(partition_updates=partition_updates, shard_bytes=shard_bytes))
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    piece = compute_piece(inputs, lambda p, i: None, 0, 0)
    _, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"peak_extra": peak - before, "model_bytes": 4 * n, "kind": piece.kind,
                      "bytes_read": piece.facts["bytes_read"], "value_bytes": piece.value.nbytes}))


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:6]))
