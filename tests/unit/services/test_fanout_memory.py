"""Fanout tasks over a model many times their range (issue 14): a child reads only its byte
range of the global model, of the state and of each update, and holds memory in proportion to
that range, not to the model. Driven through the fanout task handler (`fanout.run_task`, what
the aggregate_piece function and the local executor call) on the memory connector, with a
store that generates the big objects per ranged read and refuses any whole read of them."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from fma.adapters.invoker import RecordingInvoker
from fma.adapters.memory import MemoryModelStore, MemoryRepository
from fma.domain.aggregation.fanout import decode_piece
from fma.domain.aggregation.ranged_model import HEADER_PROBE_BYTES
from fma.services import experiments, fanout, participation
from fma.services.deps import Deps, Limits, manifest_key, model_key, state_key, update_key
from fma.services.ingest import ingest_object

from .service_world import Clock, World
from .synthetic_store import SyntheticStore, one_tensor
from .test_streaming_ingest import _traced_peak

MiB = 1 << 20
NUMEL = 64 * MiB  # one float32 tensor: a 256 MiB model
RANGE_BYTES = 8 * MiB  # each child's parameter range: 1/32 of the model
BASE = np.linspace(-1.0, 1.0, 1024, dtype=np.float32)
DP = {"noise_multiplier": 0.5, "clipping_norm": 0.1, "target_delta": 1e-5}  # every client clipped
OFFSETS = (0.25, -0.5, 0.125)  # client k's update is BASE + OFFSETS[k]: the median is BASE + 0.125


class RangeLog(SyntheticStore):
    """A SyntheticStore that also records every ranged read of a key."""

    def __init__(self, inner):
        super().__init__(inner)
        self.reads: list[tuple[str, int, int]] = []

    def get_range(self, key, start, end, version_id=None):
        if key in self.synthetic:
            self.reads.append((key, start, end))
        return super().get_range(key, start, end, version_id)


def sealed_round(strategy: str, aggregation: dict, store_class: type = RangeLog,
                 params: dict | None = None) -> tuple[World, RangeLog, str]:
    """A sealed round of 3 updates of a 256 MiB one-tensor model, all generated per read."""
    store = store_class(MemoryModelStore())
    clock, invoker = Clock(), RecordingInvoker()
    deps = Deps(repo=MemoryRepository(), store=store, invoker=invoker,
                limits=Limits(max_update_bytes=50 * 10**9, lease_seconds=600), clock=clock)
    world = World(deps, clock, invoker)
    body = {"name": "big", "max_update_bytes": 1 << 30, "strategy": {"name": strategy, "params": params or {}},
            "rounds": {"min_updates": len(OFFSETS), "total_rounds": 2},
            "aggregation": {"plan": "fanout", "shard_bytes": RANGE_BYTES} | aggregation}
    exp_id = experiments.create_experiment(deps, world.dev, body)["experiment"]["id"]
    store.add(model_key(exp_id, 0), one_tensor("w", NUMEL, BASE))
    assert ingest_object(deps, model_key(exp_id, 0)).status == "activated"
    for client, offset in zip(world.clients(exp_id, len(OFFSETS)), OFFSETS, strict=True):
        update = one_tensor("w", NUMEL, BASE + np.float32(offset), {"fma.num_examples": "5", "fma.round": "1"})
        participation.request_upload(deps, client, exp_id, 1, {"size": update.size, "sha256": update.sha256()})
        store.add(update_key(exp_id, 1, client.principal_id), update)
        assert ingest_object(deps, update_key(exp_id, 1, client.principal_id)).status == "accepted"
    store.reads.clear()
    return world, store, exp_id


def first_map(world: World, exp_id: str) -> dict:
    event = {"experiment_id": exp_id, "round": 1}
    assert fanout.run_task(world.deps, event | {"task": "start", "owner": "exec-1"})["status"] == "started"
    need = fanout.run_task(world.deps, event | {"task": "reduce", "owner": "exec-1", "complete": 0})
    assert need["status"] == "map", need
    return need


def run_child(world: World, store: RangeLog, exp_id: str, piece: int, pass_index: int = 0
              ) -> tuple[np.ndarray, dict, int]:
    """One child through the task handler: its piece's value and facts, and its traced peak."""
    store.reads.clear()
    event = {"experiment_id": exp_id, "round": 1, "task": "piece", "pass": pass_index, "piece": piece}
    out, peak = _traced_peak(lambda: fanout.run_task(world.deps, event))
    assert out["status"] == "done", out
    value, facts = decode_piece(world.deps.store.get(out["key"]))
    print(f"child peak {peak / MiB:.1f} MiB")
    return value, facts, peak


def assert_reads_within(store: RangeLog, lo: int, hi: int) -> None:
    """No byte of any object read beyond the header probe (64 KiB) and elements [lo, hi);
    the global model's header alone, and nothing read whole."""
    data_start = {key: len(obj.header) for key, (obj, _) in store.synthetic.items()}
    for key, start, end in store.reads:
        body = (start - data_start[key], end - data_start[key])
        in_range = lo * 4 <= body[0] and body[1] <= hi * 4
        assert (start == 0 and end <= HEADER_PROBE_BYTES) or in_range, (key, start, end)
    per_object = [sum(e - s for k, s, e in store.reads if k == key) for key in data_start]
    assert max(per_object) <= RANGE_BYTES + HEADER_PROBE_BYTES
    assert store.whole_reads == []


def test_a_median_child_reads_only_its_range_and_holds_memory_in_proportion_to_it():
    # Given a sealed fedmedian round of 3 updates of a 256 MiB model, planned as 32 ranges of 8 MiB
    world, store, exp_id = sealed_round("fedmedian", {})
    need = first_map(world, exp_id)
    assert need["kind"] == "map" and need["pieces"] == NUMEL * 4 // RANGE_BYTES
    # When child 5 computes its piece through the task handler
    value, facts, peak = run_child(world, store, exp_id, 5)
    # Then its piece is the median over exactly its range
    lo, hi = 5 * RANGE_BYTES // 4, 6 * RANGE_BYTES // 4
    assert facts["range"] == [lo, hi] and value.size == hi - lo
    expected = np.resize(BASE, NUMEL)[lo:hi] + np.float32(0.125)
    np.testing.assert_array_equal(value, expected.astype(np.float32))
    # and it read only its range of every object, and held a few ranges' worth of memory
    assert_reads_within(store, lo, hi)
    assert peak < 5 * RANGE_BYTES, f"the child held {peak / MiB:.1f} MiB for an {RANGE_BYTES // MiB} MiB range"


def test_a_fedavg_child_sums_one_partition_over_one_range_in_memory_of_that_range():
    # Given a sealed fedavg round of 3 updates of a 256 MiB model, partitions of 2 updates
    world, store, exp_id = sealed_round("fedavg", {"partition_updates": 2})
    need = first_map(world, exp_id)
    ranges = NUMEL * 4 // RANGE_BYTES
    assert need["kind"] == "sum" and need["pieces"] == 2 * ranges  # (partition x range), range-major
    # When the child of range 5, partition 1 (the third client alone) runs
    value, facts, peak = run_child(world, store, exp_id, 5 * 2 + 1)
    # Then its piece is that client's weighted values over range 5 only
    lo, hi = 5 * RANGE_BYTES // 4, 6 * RANGE_BYTES // 4
    assert facts["range"] == [lo, hi] and facts["count"] == 1 and value.size == hi - lo
    expected = np.float32(1 / 3) * (np.resize(BASE, NUMEL)[lo:hi] + np.float32(OFFSETS[2]))
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    assert_reads_within(store, lo, hi)
    assert peak < 5 * RANGE_BYTES, f"the child held {peak / MiB:.1f} MiB for an {RANGE_BYTES // MiB} MiB range"


class SinkStore(RangeLog):
    """The round's model and server state go to a sink shaped like S3's multipart upload (8 MiB
    parts here): hashed and counted, never held (on AWS the object lives in S3, not in the reduce)."""

    def __init__(self, inner):
        super().__init__(inner)
        self.sunk: dict[str, tuple[str, int]] = {}

    def put_stream(self, key, chunks, content_type="application/octet-stream"):
        if not key.startswith(("models/", "state/")):
            return self.inner.put_stream(key, chunks, content_type)
        digest, size, part = hashlib.sha256(), 0, bytearray()
        for chunk in chunks:
            part += chunk
            if len(part) >= RANGE_BYTES:
                digest.update(part)
                size, part = size + len(part), bytearray()
        digest.update(part)
        self.sunk[key] = (digest.hexdigest(), size + len(part))
        return "v-sunk"


@pytest.mark.parametrize(("strategy", "params"), [
    ("fedavg", {}), ("fedmedian", {}),
    # server optimizers: the step runs range by range, and the state (momentum; m and v) streams too
    ("fedavgm", {"server_momentum": 0.9, "server_learning_rate": 0.7}), ("fedadam", {}),
    # central DP: the clipped share of g and the noise are added range by range (ranged_dp)
    ("fedavg", {"dp": DP}), ("fedadam", {"dp": DP}),
], ids=lambda v: v if isinstance(v, str) else ("dp" if "dp" in v else ""))
def test_the_reduce_streams_the_model_from_its_pieces_in_memory_of_a_few_ranges(strategy, params):
    # Given a sealed round of 3 updates of a 256 MiB model, planned as 32 ranges of 8 MiB
    world, store, exp_id = sealed_round(strategy, {"partition_updates": 3}, store_class=SinkStore, params=params)
    need, pieces = first_map(world, exp_id), []
    event = {"experiment_id": exp_id, "round": 1, "task": "reduce", "owner": "exec-1"}
    while True:  # DP: the clients' norms (a fold), then the clipped sum
        for i in range(need["pieces"]):
            run_child(world, store, exp_id, i, pass_index=len(pieces))
        pieces.append(need["pieces"])
        if len(pieces) == (2 if "dp" in params else 1):
            break
        need = fanout.run_task(world.deps, event | {"complete": len(pieces)})
        assert need["status"] == "map", need
    complete = len(pieces)
    # When the reduce combines the pieces and publishes
    out, peak = _traced_peak(lambda: fanout.run_task(world.deps, event | {"complete": complete}))
    # Then the round is published with the sha256 of the bytes it streamed, the model's size
    assert out["status"] == "published", out
    sha, size = store.sunk[model_key(exp_id, 1)]
    assert out["sha256"] == sha == world.repo.get_round(exp_id, 1).model_sha256 and size == out["bytes"]
    assert size > NUMEL * 4
    manifest = json.loads(world.deps.store.get(manifest_key(exp_id, 1)))
    assert manifest["output"]["sha256"] == sha and manifest["info"]["fanout"]["pieces"] == pieces
    # and it held a few ranges (one more per state vector: a range of every output of the
    # server step is computed at once), never the 256 MiB model
    vectors = {"fedavgm": 1, "fedadam": 2}.get(strategy, 0)  # momentum; m and v
    # DP finishes a range at a time: its sum, that range of g, g's clipped share, noise chunks
    finish = 5 if "dp" in params else 0
    print(f"reduce peak {peak / MiB:.1f} MiB")
    assert peak < (6 + vectors + finish) * RANGE_BYTES, f"the reduce held {peak / MiB:.1f} MiB"
    if vectors:  # the new state streamed too, whole
        _, state_size = store.sunk[state_key(exp_id, 1)]
        assert state_size > vectors * NUMEL * 4


@pytest.mark.parametrize(("strategy", "params", "kind"), [
    ("multikrum", {"num_malicious": 0, "num_to_select": 2}, "sum"),  # the mean of the picked
    ("bulyan", {"num_malicious": 0}, "map"),  # per coordinate, around the median of the picked
], ids=lambda v: v if isinstance(v, str) and v in ("multikrum", "bulyan") else "")
def test_krum_and_bulyan_select_from_distance_pieces_and_stream_the_model_of_the_picked(strategy, params, kind):
    # Given a sealed round of 3 updates of a 256 MiB model, planned as 32 ranges of 8 MiB
    world, store, exp_id = sealed_round(strategy, {"partition_updates": 3}, store_class=SinkStore, params=params)
    need = first_map(world, exp_id)
    assert need["kind"] == "fold"  # pass 0: per range, the clients x clients squared distances
    for i in range(need["pieces"]):
        _, _, child = run_child(world, store, exp_id, i)
        assert child < 5 * RANGE_BYTES
    # When the reduce selects from the summed distances, the children of pass 1 run the picked
    event = {"experiment_id": exp_id, "round": 1, "task": "reduce", "owner": "exec-1"}
    need = fanout.run_task(world.deps, event | {"complete": 1})
    assert need["status"] == "map" and need["kind"] == kind, need
    for i in range(need["pieces"]):
        run_child(world, store, exp_id, i, pass_index=1)
    out, peak = _traced_peak(lambda: fanout.run_task(world.deps, event | {"complete": 2}))
    # Then the model of the picked clients is published from its pieces, streamed
    assert out["status"] == "published", out
    sha, size = store.sunk[model_key(exp_id, 1)]
    assert out["sha256"] == sha == world.repo.get_round(exp_id, 1).model_sha256 and size > NUMEL * 4
    manifest = json.loads(world.deps.store.get(manifest_key(exp_id, 1)))
    # the two clients nearest the others (offsets 0.25 and 0.125 are 0.375 and 0.125 from the
    # rest; -0.5 is 0.75 and 0.625 away): Multi-Krum keeps them, Bulyan's Krum picks n - 2f = 3
    assert len(manifest["info"]["selected"]) == (2 if strategy == "multikrum" else 3)
    print(f"reduce peak {peak / MiB:.1f} MiB")
    assert peak < 6 * RANGE_BYTES, f"the reduce held {peak / MiB:.1f} MiB, not a few ranges"
