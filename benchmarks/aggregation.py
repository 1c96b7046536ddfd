"""Aggregation benchmark: FMA against Flower 1.42 on the same client models.

For each configuration (K clients x N float32 parameters) it prints the median of `--reps`
runs of:
  - FMA FedAvg from safetensors bytes (ranged zero-copy reads, streaming fused axpy);
  - Flower `aggregate_inplace` from FitRes (decoding included, as FedAvg.aggregate_fit does);
  - Flower `aggregate` from FitRes (decoding included; FedAvg with inplace=False);
  - the `np.add` reference: one np.add pass per update over the same safetensors bytes;
  - FMA FedMedian / Flower `aggregate_median` and FMA Krum / Flower `aggregate_krum`
    (Flower's decoding included), where Flower's run time is reasonable;
with ratios and peak extra memory (tracemalloc, one separate run, inputs excluded).

    make bench                 # K=10 x 10M, K=50 x 1M, K=100 x 5M
    make bench ARGS="--quick"  # the same shape of table, 10x smaller models
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fma.domain.aggregation import EngineOptions, UpdateInput, aggregate
from fma.domain.codec import decode, encode

FULL = [(10, 10_000_000), (50, 1_000_000), (100, 5_000_000)]
QUICK = [(10, 1_000_000), (50, 100_000), (100, 500_000)]
#: Flower's pairwise-distance loop is O(K^2 N) in Python-level numpy calls: skip it past this.
FLOWER_KRUM_MAX_WORK = 50 * 50 * 1_000_000
FLOWER_MEDIAN_MAX_BYTES = 4 << 30


@dataclass
class Row:
    config: str
    method: str
    seconds: float
    input_bytes: int
    peak: int | None
    model_bytes: int
    ref: float | None = None
    vs: float | None = None


def timed(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_extra(fn: Callable[[], object]) -> int:
    """Peak bytes allocated while fn runs, above what was allocated before (inputs excluded)."""
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak - before


def make_inputs(k: int, n: int, seed: int = 0):
    """Global model, K safetensors updates (3 tensors) and the same as Flower FitRes."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    rng = np.random.default_rng(seed)
    sizes = {"layer0/kernel": n - n // 10 - 1000, "layer1/kernel": n // 10, "layer1/bias": 1000}
    g = {name: rng.standard_normal(size).astype(np.float32) for name, size in sizes.items()}
    # Each client is the global model plus its own shift of one random vector: per coordinate,
    # the clients' values come in no particular order (sorted inputs would flatter selection).
    pool = {name: (0.01 * rng.standard_normal(size)).astype(np.float32) for name, size in sizes.items()}
    blobs, fitres = [], []
    for i in range(k):
        client = {name: arr + np.roll(pool[name], 7919 * i + 1) for name, arr in g.items()}
        blobs.append(encode(client))
        params = ndarrays_to_parameters([client[name] for name in sorted(client)])
        fitres.append((None, FitRes(Status(Code.OK, ""), params, 10 + i, {})))
        del client
    updates = [_update(f"c{i:04d}", 10 + i, b) for i, b in enumerate(blobs)]
    return g, blobs, updates, fitres


def _update(client_id: str, num_examples: int, blob: bytes) -> UpdateInput:
    """An update already downloaded: ranged reads are zero-copy slices of its bytes."""
    view = memoryview(blob)
    return UpdateInput(client_id, num_examples, "0" * 64, len(blob), lambda: blob, lambda a, e: view[a:e])


def np_add_reference(blobs: list[bytes], n: int) -> np.ndarray:
    acc = np.zeros(n, dtype=np.float32)
    for blob in blobs:
        tensors, _ = decode(blob)
        off = 0
        for name in sorted(tensors):
            view = tensors[name].reshape(-1)
            np.add(acc[off : off + view.size], view, out=acc[off : off + view.size])
            off += view.size
    return acc


def bench_config(k: int, n: int, reps: int) -> list[Row]:
    from flwr.common import parameters_to_ndarrays
    from flwr.server.strategy import aggregate as fa

    g, blobs, updates, fitres = make_inputs(k, n)
    config = f"K={k} x {n / 1e6:g}M"
    model_bytes, input_bytes = 4 * n, 4 * n * k
    opts = EngineOptions()

    def decoded():
        return [(parameters_to_ndarrays(r.parameters), r.num_examples) for _, r in fitres]

    cases: list[tuple[str, Callable[[], object]]] = [
        ("np.add reference", lambda: np_add_reference(blobs, n)),
        ("FMA fedavg", lambda: aggregate("fedavg", {}, g, updates, {}, round_number=1, options=opts)),
        ("FMA fedavg (portable)", lambda: aggregate("fedavg", {}, g, updates, {}, round_number=1,
                                                    options=EngineOptions(portable=True))),
        ("Flower aggregate_inplace", lambda: fa.aggregate_inplace(fitres)),
        ("Flower aggregate", lambda: fa.aggregate(decoded())),
        ("FMA fedmedian", lambda: aggregate("fedmedian", {}, g, updates, {}, round_number=1, options=opts)),
    ]
    if input_bytes <= FLOWER_MEDIAN_MAX_BYTES:
        cases.append(("Flower aggregate_median", lambda: fa.aggregate_median(decoded())))
    cases.append(("FMA krum (f=2)", lambda: aggregate("krum", {"num_malicious": 2}, g, updates, {},
                                                      round_number=1, options=opts)))
    if k * k * n <= FLOWER_KRUM_MAX_WORK:
        cases.append(("Flower aggregate_krum (f=2)", lambda: fa.aggregate_krum(decoded(), 2, 0)))
    rows = []
    for method, fn in cases:
        seconds = timed(fn, reps)
        rows.append(Row(config, method, seconds, input_bytes, peak_extra(fn), model_bytes))
        print(f"  {config:>14}  {method:<28} {seconds:8.3f} s", flush=True)
    _ratios(rows)
    return rows


#: which FMA row each Flower row is compared with.
FAMILY = {
    "Flower aggregate_inplace": "FMA fedavg",
    "Flower aggregate": "FMA fedavg",
    "Flower aggregate_median": "FMA fedmedian",
    "Flower aggregate_krum (f=2)": "FMA krum (f=2)",
}


def _ratios(rows: list[Row]) -> None:
    by = {r.method: r.seconds for r in rows}
    for r in rows:
        r.ref = r.seconds / by["np.add reference"]
        fma = by.get(FAMILY.get(r.method, ""))
        r.vs = r.seconds / fma if fma else None


def print_table(rows: list[Row]) -> None:
    head = (f"| {'config':<14} | {'method':<28} | {'median s':>9} | {'GB/s in':>8} | {'x np.add':>8} "
            f"| {'x FMA':>7} | {'peak extra MB':>13} | {'x model':>7} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        vs = f"{r.vs:7.1f}" if r.vs is not None else " " * 7
        peak = f"{r.peak / 1e6:13.1f}" if r.peak is not None else ""
        ratio = f"{r.peak / r.model_bytes:7.2f}" if r.peak is not None else ""
        print(f"| {r.config:<14} | {r.method:<28} | {r.seconds:9.3f} | {r.input_bytes / r.seconds / 1e9:8.2f} "
              f"| {r.ref:8.2f} | {vs} | {peak} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x smaller models")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i.get('architecture')} x{i['num_threads']}" for i in threadpool_info())
    print(f"numpy {np.__version__}; BLAS: {blas}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}; "
          f"{os.cpu_count()} cores; {platform.processor() or platform.machine()}")
    rows: list[Row] = []
    for k, n in QUICK if args.quick else FULL:
        rows += bench_config(k, n, max(5, args.reps))
        gc.collect()
    print()
    print("x np.add: time / np.add reference time; x FMA: Flower's time / FMA's time for the same rule;")
    print("peak extra: tracemalloc peak above the inputs during one run (FitRes and safetensors bytes excluded).")
    print_table(rows)


if __name__ == "__main__":
    main()
