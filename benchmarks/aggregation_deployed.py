"""Big models through the deployed fanout path (issue 14): the aggregate_piece task handler
(`fma.services.fanout.run_task`, what Step Functions' children and the local executor call) on
the memory connector, over a store that generates the model's and the updates' bytes per ranged
read (nothing of a 50 GB model exists but the range being read) and counts every read for the
S3 model of aggregation_io.py. The round is set up as ingest leaves it (activated, K accepted
updates, sealed) through the metadata store, without ingest's full pass over each object.

Per model: the start task, the first reduce (which asks for the Map), then one child measured
(tracemalloc peak of the task, its reads modelled as S3 serves them). The reduce that combines
the pieces and streams the model out is run whole on two scaled-down models (all the round's
tasks, the round publishes: 50 GB of pieces would not fit this machine), its peak fitted as
a x model + b and read at 5 and 50 GB. Streamed writes go to a sink shaped like S3's multipart
upload (one 64 MiB part held).
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
import tracemalloc
from typing import Any

import numpy as np

from fma.adapters.invoker import RecordingInvoker
from fma.adapters.memory import MemoryModelStore, MemoryRepository
from fma.domain.auth import Principal, Role
from fma.domain.experiment import new_round
from fma.domain.model_spec import ModelSpec
from fma.domain.records import UpdateRecord
from fma.domain.safetensors_header import parse_header
from fma.domain.states import UpdateStatus
from fma.services import experiments, fanout
from fma.services.deps import Deps, Limits, model_key, update_key

MB = 1 << 20
GOAL_BYTES = 3 * 10**9
PATTERN = 1024  # elements of the repeating pattern of each generated object
READ_CAP = 64 * MB  # the largest ranged read served from a generated object
PART_BYTES = 64 * MB  # the aws connector's part size of a streamed write


class GeneratedStore:
    """Forwards to `inner`, except keys added with `add`: one float32 tensor repeating a pattern
    from the data start, generated per ranged read; reads of them are counted in `sizes`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.objects: dict[str, tuple[bytes, bytes]] = {}  # key -> header, pattern block
        self.sizes: list[int] = []
        self.streamed: dict[str, tuple[str, int]] = {}

    def add(self, key: str, numel: int, offset: float, metadata: dict[str, str] | None = None) -> None:
        entry = {"w": {"dtype": "F32", "shape": [numel], "data_offsets": [0, numel * 4]}}
        raw = json.dumps({"__metadata__": metadata, **entry} if metadata else entry).encode()
        raw += b" " * (-len(raw) % 8)
        pattern = (np.linspace(-1.0, 1.0, PATTERN, dtype=np.float32) + np.float32(offset)).tobytes()
        self.objects[key] = (struct.pack("<Q", len(raw)) + raw, pattern * (READ_CAP // len(pattern) + 2))
        self.objects[key + "#size"] = (b"", str(len(raw) + 8 + numel * 4).encode())

    def _size(self, key: str) -> int:
        return int(self.objects[key + "#size"][1])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def head(self, key: str, version_id: str | None = None) -> tuple[int, str | None] | None:
        return (self._size(key), "v1") if key in self.objects else self.inner.head(key, version_id)

    def size(self, key: str) -> int | None:
        found = self.head(key)
        return None if found is None else found[0]

    def exists(self, key: str) -> bool:
        return key in self.objects or self.inner.exists(key)

    def get_range(self, key: str, start: int, end: int, version_id: str | None = None) -> bytes:
        if key not in self.objects:
            return self.inner.get_range(key, start, end, version_id)
        header, block = self.objects[key]
        if start < 0 or end > self._size(key) or end - start > READ_CAP:
            raise ValueError(f"read [{start}, {end}) of {key} is out of bounds or above {READ_CAP}")
        self.sizes.append(end - start)
        head = header[start:end] if start < len(header) else b""
        first, last = max(start, len(header)) - len(header), end - len(header)
        if last <= first:
            return head
        rot = first % (4 * PATTERN)
        return head + block[rot : rot + last - first]

    def put_stream(self, key: str, chunks: Any, content_type: str = "application/octet-stream") -> str:
        """The round's model and state go to a sink shaped like S3's multipart upload: one part
        of `PART_BYTES` held at a time, the bytes hashed and counted, nothing kept (on AWS the
        object lives in S3, not in the function)."""
        h, size, part = hashlib.sha256(), 0, bytearray()
        for chunk in chunks:
            part += chunk
            if len(part) >= PART_BYTES:
                h.update(part)
                size += len(part)
                part = bytearray()
        h.update(part)
        self.streamed[key] = (h.hexdigest(), size + len(part))
        return "v-streamed"

    def get(self, key: str, version_id: str | None = None) -> bytes:
        if key in self.objects:
            raise AssertionError(f"{key} was read whole")
        return self.inner.get(key, version_id)

    def get_versioned(self, key: str, version_id: str | None = None) -> tuple[bytes, str | None]:
        return self.get(key, version_id), version_id


def generated_sha256(store: GeneratedStore, key: str) -> str:
    """What a client would declare for a generated object (hashed in 64 MiB ranges)."""
    h, size = hashlib.sha256(), store._size(key)
    for a in range(0, size, READ_CAP):
        h.update(store.get_range(key, a, min(size, a + READ_CAP)))
    store.sizes.clear()
    return h.hexdigest()


def sealed_round(numel: int, k: int, strategy: str, aggregation: dict, hashed: bool,
                 params: dict | None = None) -> tuple[Deps, str]:
    """An experiment of a `numel`-element float32 model with K accepted updates, sealed."""
    store = GeneratedStore(MemoryModelStore())
    deps = Deps(repo=MemoryRepository(), store=store, invoker=RecordingInvoker(),
                limits=Limits(max_update_bytes=50 * 10**9 + MB, lease_seconds=3600), clock=time.time)
    body = {"name": "big", "max_update_bytes": 50 * 10**9 + MB, "strategy": {"name": strategy, "params": params or {}},
            "rounds": {"min_updates": k, "total_rounds": 2}, "aggregation": {"plan": "fanout"} | aggregation}
    exp_id = experiments.create_experiment(deps, Principal(Role.DEVELOPER, "dev"), body)["experiment"]["id"]
    store.add(model_key(exp_id, 0), numel, 0.0)
    header = parse_header(store.objects[model_key(exp_id, 0)][0])
    sha = generated_sha256(store, model_key(exp_id, 0)) if hashed else "not-hashed: the children never read it"
    exp = deps.repo.get_experiment(exp_id)
    assert deps.repo.activate(exp_id, ModelSpec.from_header(header).to_json(), sha, new_round(exp, 1, time.time()),
                              "v1")
    for c in range(k):
        key = update_key(exp_id, 1, f"c{c:03d}")
        store.add(key, numel, 0.001 * (c + 1), {"fma.num_examples": str(5 + c), "fma.round": "1"})
        record = UpdateRecord(exp_id, 1, f"c{c:03d}", UpdateStatus.UPLOADING, num_examples=5 + c,
                              size=store._size(key), version_id="v1")
        assert deps.repo.accept_update(record) == "accepted"
    assert deps.repo.seal_round(exp_id, 1, k, time.time(), 3600)
    return deps, exp_id


def traced(fn) -> tuple[Any, int, float]:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out, peak, time.perf_counter() - t0


def one_child(numel: int, k: int, strategy: str, s3: Any) -> dict:
    """start -> reduce (asks for the Map) -> the middle child, measured."""
    deps, exp_id = sealed_round(numel, k, strategy, {"partition_updates": k}, hashed=False)
    event = {"experiment_id": exp_id, "round": 1}
    assert fanout.run_task(deps, event | {"task": "start", "owner": "bench"})["status"] == "started"
    need = fanout.run_task(deps, event | {"task": "reduce", "owner": "bench", "complete": 0})
    assert need["status"] == "map", need
    deps.store.sizes.clear()
    piece = event | {"task": "piece", "pass": need["pass"], "piece": need["pieces"] // 2}
    out, peak, seconds = traced(lambda: fanout.run_task(deps, piece))
    assert out["status"] == "done", out
    sizes = list(deps.store.sizes)
    return {"strategy": strategy, "children": need["pieces"], "kind": need["kind"], "read": sum(sizes),
            "requests": len(sizes), "wall": max(s3.seconds(sizes), seconds), "compute": seconds, "peak": peak}


def whole_round(numel: int, k: int, strategy: str, params: dict | None = None) -> dict:
    """Every task of a fanout round of a scaled-down model, in order; the peak of each kind."""
    deps, exp_id = sealed_round(numel, k, strategy, {"partition_updates": k}, hashed=True,  # 64 MiB ranges
                                params=params)
    event = {"experiment_id": exp_id, "round": 1}
    fanout.run_task(deps, event | {"task": "start", "owner": "bench"})
    peaks: dict[str, int] = {"piece": 0, "reduce": 0}
    complete = 0
    while True:
        out, peak, _ = traced(lambda c=complete: fanout.run_task(
            deps, event | {"task": "reduce", "owner": "bench", "complete": c}))
        peaks["reduce"] = max(peaks["reduce"], peak)
        if out["status"] != "map":
            break
        for i in range(out["pieces"]):
            _, peak, _ = traced(lambda i=i, p=out["pass"]: fanout.run_task(
                deps, event | {"task": "piece", "pass": p, "piece": i}))
            peaks["piece"] = max(peaks["piece"], peak)
        complete = out["next_complete"]
    assert out["status"] == "published", out
    return {"model_bytes": numel * 4, **peaks}


#: the reduce of every kind of strategy: a mean, a coordinate-wise rule, a server optimizer,
#: a selection (two passes), central DP (norms, then the clipped sum finished range by range).
REDUCE_STRATEGIES = [
    ("fedavg", {}), ("fedmedian", {}), ("fedadam", {}), ("multikrum", {"num_malicious": 0, "num_to_select": 2}),
    ("bulyan", {"num_malicious": 0}),
    ("fedavg", {"dp": {"noise_multiplier": 0.5, "clipping_norm": 1.0, "target_delta": 1e-5}}),
]


def big_model_rows(s3: Any, k: int = 4, quick: bool = False) -> list[dict]:
    """The 5 GB and 50 GB rows (children through the task handler) and the reduce's ratio."""
    rows = []
    print(f"\nBig models through the fanout task handlers (K={k}, 64 MiB ranges; goal: under 3 GB per task)")
    print(f"{'model':<8} {'strategy':<10} {'children':>8} {'child MB read':>13} {'GETs':>6} {'child s':>8} "
          f"{'child peak MB':>13}  goal")
    for gb in ((5,) if quick else (5, 50)):
        for strategy in ("fedavg", "fedmedian"):
            row = one_child(gb * 10**9 // 4, k, strategy, s3) | {"model_gb": gb}
            rows.append(row)
            print(f"{gb:>3} GB   {strategy:<10} {row['children']:>8,} {row['read'] / MB:>13.0f} {row['requests']:>6} "
                  f"{row['wall']:>8.2f} {row['peak'] / MB:>13.0f}  {'met' if row['peak'] < GOAL_BYTES else 'OVER'}")
    sizes = (128, 256)  # MiB, above one 64 MiB part and range: fitted, not run at 50 GB
    for strategy, params in REDUCE_STRATEGIES:
        small, big = (whole_round(mib * MB // 4, k, strategy, params) for mib in sizes)
        strategy = strategy + ("+dp" if "dp" in params else "")
        # a flat peak (a few ranges whatever the model) may measure a little lower at the larger
        # size (allocator reuse): never fit a negative slope, take the larger peak as the constant
        slope = max(0.0, (big["reduce"] - small["reduce"]) / (big["model_bytes"] - small["model_bytes"]))
        fixed = max(small["reduce"], big["reduce"]) - slope * big["model_bytes"]
        at = {gb: (slope * gb * 10**9 + fixed) / 1e9 for gb in (5, 50)}
        print(f"reduce ({strategy}; every task run and published at {sizes[0]} and {sizes[1]} MiB): peak "
              f"{small['reduce'] / MB:.0f} / {big['reduce'] / MB:.0f} MB = {slope:.2f} x model + {fixed / MB:.0f} MB "
              f"(children {big['piece'] / MB:.0f} MB); fitted: 5 GB -> {at[5]:.2f} GB, 50 GB -> {at[50]:.2f} GB "
              f"({'OVER' if at[50] * 1e9 > GOAL_BYTES else 'within'} the 3 GB goal)")
        rows.append({"reduce": strategy, "slope": slope, "fixed": fixed, "at_gb": at})
    return rows
