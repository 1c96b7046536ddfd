"""Aggregation I/O benchmark (issue 14): the single and fanout plans over S3-like reads.

The real engine aggregates real bytes; a model-data store wrapper counts every ranged read
and models its time as S3 serves it: first-byte latency (30 ms) + size / per-connection
bandwidth (90 MB/s), `--connections` reads in flight per function (FMA_READ_CONCURRENCY). A
task's modelled wall time is max(modelled reads on its connections, its measured compute);
a fanout pass takes its slowest child (children run at once up to MaxConcurrency) plus Step
Functions' overhead per state. Memory is the tracemalloc peak of one task (inputs excluded).
GB-s and USD use the cost module's list prices (fma.domain.cost); the physical minimum is
every byte read once at bandwidth x connections x children, and the GB-s of one streaming
pass of one function.

    make bench-io                      # K = 100, 1k (4 MB), 10k/100k extrapolated, 5 GB, 50 GB
    make bench-io ARGS="--quick"       # K = 100, 1k at 400 kB; the 5 GB model only

K >= 10k is extrapolated (and said so): its fanout children are partitions of the same size
as the measured K = 1k partition, its reduce sums K / partition measured partials.
The 5 GB and 50 GB models run through the fanout task handlers (aggregation_deployed.py): one
child each measured, the reduce run whole at 128 and 256 MiB and its peak fitted (scaled).
"""

from __future__ import annotations

import argparse
import heapq
import time
import tracemalloc
from dataclasses import dataclass, field, replace

import numpy as np
from aggregation_deployed import big_model_rows

from fma.domain.aggregation import EngineOptions, Partitioning, UpdateInput
from fma.domain.aggregation.fanout import RoundInputs, compute_piece, decode_piece, encode_piece, reduce
from fma.domain.aggregation.passes import NeedPass
from fma.domain.codec import encode
from fma.domain.cost import PRICES

MB = 1 << 20
STATE_SECONDS = 0.05  # a Step Functions state transition, about
MAP_START_SECONDS = 1.0  # a Distributed Map run starting its children (cold starts included)
MEMORY_MB = 3008


@dataclass
class S3Model:
    latency: float = 0.030
    bandwidth: float = 90e6
    connections: int = 16

    def seconds(self, sizes: list[int]) -> float:
        """Requests in issue order on `connections` lanes: when the last one ends."""
        lanes = [0.0] * self.connections
        for size in sizes:
            heapq.heapreplace(lanes, lanes[0] + self.latency + size / self.bandwidth)
        return max(lanes)


@dataclass
class Reads:
    sizes: list[int] = field(default_factory=list)

    def take(self) -> list[int]:
        out, self.sizes = self.sizes, []
        return out


def update(client: str, data: memoryview, n: int, reads: Reads) -> UpdateInput:
    def fetch_range(a: int, b: int) -> bytes:
        reads.sizes.append(b - a)
        return bytes(data[a:b])  # a fresh buffer per read, as an S3 GET body

    return UpdateInput(client, n, "0" * 64, len(data), lambda: fetch_range(0, len(data)), fetch_range)


@dataclass
class Task:
    name: str
    wall: float
    compute: float
    read_seconds: float
    requests: int
    nbytes: int
    peak: int


def measure(name: str, fn, reads: Reads, s3: S3Model) -> tuple[object, Task]:
    reads.take()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    compute = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    sizes = reads.take()
    modelled = s3.seconds(sizes)
    return out, Task(name, max(modelled, compute), compute, modelled, len(sizes), sum(sizes), peak)


def round_inputs(k: int, n_params: int, strategy: str, partition: int, reads: Reads) -> RoundInputs:
    rng = np.random.default_rng(0)
    g = {"w": np.zeros(n_params, np.float32)}
    variants = [memoryview(encode({"w": rng.standard_normal(n_params).astype(np.float32)})) for _ in range(4)]
    ups = [update(f"c{i:06d}", variants[i % 4], 1 + i % 7, reads) for i in range(k)]
    return RoundInputs(strategy, {}, g, ups, {}, round_number=1, options=EngineOptions(prefetch=0),
                       partitioning=Partitioning(partition_updates=partition))


def fanout(inputs: RoundInputs, reads: Reads, s3: S3Model, concurrency: int) -> dict:
    """The fanout plan in this process, each task measured: passes of children, reduces."""
    pieces: dict[tuple[int, int], bytes] = {}
    tasks: list[Task] = []
    wall, complete = 0.0, 0

    def load(p: int, i: int) -> np.ndarray:
        reads.sizes.append(len(pieces[(p, i)]))
        return decode_piece(pieces[(p, i)])[0]

    def reduce_task(c: int) -> object:
        out = reduce(inputs, load, c)
        if not isinstance(out, NeedPass):  # the reduce writes the model: the pieces it streams are read here
            out.model = {k: np.asarray(v) for k, v in out.model.items()}
        return out

    while True:
        out, task = measure("reduce", lambda c=complete: reduce_task(c), reads, s3)
        tasks.append(task)
        wall += task.wall + 3 * STATE_SECONDS
        if not isinstance(out, NeedPass):
            return {"result": out, "tasks": tasks, "wall": wall + 3 * STATE_SECONDS}
        children = []
        for i in range(out.npieces):
            piece, task = measure("piece", lambda i=i, p=out.index: compute_piece(replace(inputs), load, p, i),
                                  reads, s3)
            pieces[(out.index, i)] = encode_piece(piece)
            children.append(task)
        tasks += children
        waves = -(-len(children) // concurrency)
        wall += MAP_START_SECONDS + waves * max(t.wall for t in children) + 2 * STATE_SECONDS
        complete = out.index + 1


def usd(tasks: list[Task], transitions: int, puts: int) -> tuple[float, float]:
    gb_s = sum(t.wall for t in tasks) * MEMORY_MB / 1024
    cost = (gb_s * PRICES.lambda_gb_second + len(tasks) * PRICES.lambda_request
            + sum(t.requests for t in tasks) * PRICES.s3_get + puts * PRICES.s3_put
            + transitions * PRICES.state_transition)
    return gb_s, cost


def minimum(nbytes: int, s3: S3Model, children: int, objects: float) -> tuple[float, float, float]:
    """Physical floor: every byte once at bandwidth x connections x children; one pass's GB-s;
    one GET per object (an object cannot be read in less), or per 16 MiB of a bigger one."""
    wall = nbytes / (s3.bandwidth * s3.connections * children)
    gb_s = nbytes / (s3.bandwidth * s3.connections) * MEMORY_MB / 1024
    return wall, gb_s, gb_s * PRICES.lambda_gb_second + max(objects, nbytes / (16 * MB)) * PRICES.s3_get


ROW = "{:<34} {:>6} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>10} {:>7} {:>7}"


def header() -> None:
    print(ROW.format("case", "plan", "wall s", "min s", "GB read", "requests", "peak MB", "GB-s", "USD", "xUSD",
                     "x wall"))


def report(case: str, plan: str, tasks: list[Task], wall: float, transitions: int, puts: int, s3: S3Model,
           children: int, scale: float = 1.0, objects: float = 0) -> dict:
    nbytes = sum(t.nbytes for t in tasks) * scale
    gb_s, cost = usd(tasks, transitions, puts)
    gb_s, cost = gb_s * scale, cost * scale
    floor_wall, _, floor_usd = minimum(nbytes, s3, children, objects)
    peak = max(t.peak for t in tasks)
    row = {"case": case, "plan": plan, "wall": wall, "min_wall": floor_wall, "gb_read": nbytes / 1e9,
           "requests": sum(t.requests for t in tasks) * scale, "peak_mb": peak / MB, "gb_s": gb_s, "usd": cost,
           "usd_vs_min": cost / floor_usd, "wall_vs_min": wall / floor_wall}
    print(ROW.format(case, plan, f"{wall:.2f}", f"{floor_wall:.2f}", f"{nbytes / 1e9:.2f}",
                     f"{row['requests']:.0f}", f"{peak / MB:.0f}", f"{gb_s:.1f}", f"{cost:.5f}",
                     f"{row['usd_vs_min']:.2f}", f"{row['wall_vs_min']:.1f}"))
    return row


def decomposable(k: int, n_params: int, partition: int, s3: S3Model, concurrency: int, label: str) -> list[dict]:
    reads = Reads()
    inputs = round_inputs(k, n_params, "fedavg", partition, reads)
    single, task = measure("aggregate", lambda: inputs.run(None), reads, s3)
    rows = [report(label, "single", [task], task.wall, 0, 3, s3, 1, objects=k)]
    out = fanout(inputs, reads, s3, concurrency)
    assert encode(out["result"].model) == encode(single.model), "the plans must give the same bytes"
    pieces = [t for t in out["tasks"] if t.name == "piece"]
    transitions = 7 + 3 + 2 * len(pieces)
    rows.append(report(label, "fanout", out["tasks"], out["wall"], transitions, 3 + len(pieces), s3, len(pieces),
                       objects=k))
    return rows, task, out


def extrapolate(k: int, measured: dict, single_task: Task, partition: int, s3: S3Model, concurrency: int) -> list:
    """K updates from the measured run of `partition` updates: single scales linearly; fanout
    runs K / partition children like the measured one, then a reduce of that many partials."""
    scale = k / partition
    label = f"K={k:,} x 4 MB (extrapolated)"
    rows = [report(label, "single", [single_task], single_task.wall * scale, 0, 3, s3, 1, scale, objects=k)]
    child = replace(single_task, name="piece")
    final = measured["tasks"][-1]
    partial = 4 * MB
    reduce_read = s3.seconds([partial] * int(scale))
    reduce_wall = max(reduce_read, final.compute + scale * partial / 4e9)  # one np.add pass per partial
    children = int(scale)
    waves = -(-children // concurrency)
    wall = measured["tasks"][0].wall + MAP_START_SECONDS + waves * child.wall + reduce_wall + 10 * STATE_SECONDS
    tasks = [measured["tasks"][0], *[child] * children,
             Task("reduce", reduce_wall, final.compute, reduce_read, children, children * partial, final.peak)]
    rows.append(report(label, "fanout", tasks, wall, 7 + 3 + 2 * children, 3 + children, s3, children, objects=k))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="400 kB updates instead of 4 MB")
    parser.add_argument("--latency", type=float, default=0.030, help="first-byte latency, seconds")
    parser.add_argument("--bandwidth", type=float, default=90e6, help="bytes per second per connection")
    parser.add_argument("--connections", type=int, default=16, help="reads in flight per function")
    parser.add_argument("--concurrency", type=int, default=1000, help="the Map's MaxConcurrency")
    args = parser.parse_args()
    s3 = S3Model(args.latency, args.bandwidth, args.connections)
    n_params = (MB if not args.quick else MB // 10)
    print(f"S3 model: {s3.latency * 1000:.0f} ms first byte, {s3.bandwidth / 1e6:.0f} MB/s per connection, "
          f"{s3.connections} connections per function; Map concurrency {args.concurrency}; {MEMORY_MB} MB functions")
    header()
    size = "4 MB" if not args.quick else "400 kB"
    decomposable(100, n_params, 25, s3, args.concurrency, f"K=100 x {size}")
    _, single_task, measured = decomposable(1000, n_params, 100, s3, args.concurrency, f"K=1,000 x {size}")
    if not args.quick:  # a child of 1,000 updates is what the single plan of K=1,000 measured
        for k in (10_000, 100_000):
            extrapolate(k, measured, single_task, 1000, s3, args.concurrency)
    big_model_rows(s3, k=4, quick=args.quick)


if __name__ == "__main__":
    main()
