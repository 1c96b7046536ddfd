"""Fanout tasks over a model many times their range (issue 14): a child reads only its byte
range of the global model, of the state and of each update, and holds memory in proportion to
that range, not to the model. Driven through the fanout task handler (`fanout.run_task`, what
the aggregate_piece function and the local executor call) on the memory connector, with a
store that generates the big objects per ranged read and refuses any whole read of them."""

from __future__ import annotations

import numpy as np
import pytest

from fma.adapters.invoker import RecordingInvoker
from fma.adapters.memory import MemoryModelStore, MemoryRepository
from fma.domain.aggregation.fanout import decode_piece
from fma.domain.aggregation.ranged_model import HEADER_PROBE_BYTES
from fma.services import experiments, fanout, participation
from fma.services.deps import Deps, Limits, model_key, update_key
from fma.services.ingest import ingest_object

from .service_world import Clock, World
from .synthetic_store import SyntheticStore, one_tensor
from .test_streaming_ingest import _traced_peak

MiB = 1 << 20
NUMEL = 64 * MiB  # one float32 tensor: a 256 MiB model
RANGE_BYTES = 8 * MiB  # each child's parameter range: 1/32 of the model
BASE = np.linspace(-1.0, 1.0, 1024, dtype=np.float32)
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


@pytest.fixture
def big_round() -> tuple[World, RangeLog, str]:
    store = RangeLog(MemoryModelStore())
    clock, invoker = Clock(), RecordingInvoker()
    deps = Deps(repo=MemoryRepository(), store=store, invoker=invoker,
                limits=Limits(max_update_bytes=50 * 10**9, lease_seconds=600), clock=clock)
    world = World(deps, clock, invoker)
    body = {"name": "big", "max_update_bytes": 1 << 30, "strategy": {"name": "fedmedian"},
            "rounds": {"min_updates": len(OFFSETS), "total_rounds": 2},
            "aggregation": {"plan": "fanout", "shard_bytes": RANGE_BYTES}}
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


def test_a_median_child_reads_only_its_range_and_holds_memory_in_proportion_to_it(big_round):
    # Given a sealed fedmedian round of 3 updates of a 256 MiB model, planned as 32 ranges of 8 MiB
    world, store, exp_id = big_round
    event = {"experiment_id": exp_id, "round": 1}
    assert fanout.run_task(world.deps, event | {"task": "start", "owner": "exec-1"})["status"] == "started"
    need = fanout.run_task(world.deps, event | {"task": "reduce", "owner": "exec-1", "complete": 0})
    assert need["status"] == "map" and need["kind"] == "map" and need["pieces"] == NUMEL * 4 // RANGE_BYTES
    store.reads.clear()
    # When child 5 computes its piece through the task handler
    out, peak = _traced_peak(lambda: fanout.run_task(world.deps, event | {"task": "piece", "pass": 0, "piece": 5}))
    # Then its piece is the median over exactly its range
    assert out["status"] == "done"
    value, facts = decode_piece(world.deps.store.get(out["key"]))
    lo, hi = 5 * RANGE_BYTES // 4, 6 * RANGE_BYTES // 4
    assert facts["range"] == [lo, hi] and value.size == hi - lo
    expected = np.resize(BASE, NUMEL)[lo:hi] + np.float32(0.125)
    np.testing.assert_array_equal(value, expected.astype(np.float32))
    # and it read no byte of any object beyond the header probe (64 KiB) and that range
    data_start = {key: len(obj.header) for key, (obj, _) in store.synthetic.items()}
    for key, start, end in store.reads:
        body = (start - data_start[key], end - data_start[key])
        in_range = lo * 4 <= body[0] and body[1] <= hi * 4
        assert (start == 0 and end <= HEADER_PROBE_BYTES) or in_range, (key, start, end)
    per_update = [sum(e - s for k, s, e in store.reads if k == key) for key in data_start]
    assert max(per_update) <= RANGE_BYTES + HEADER_PROBE_BYTES
    assert store.whole_reads == []
    assert sum(e - s for k, s, e in store.reads if k == model_key(exp_id, 0)) <= HEADER_PROBE_BYTES  # its header
    # and it held at most a few ranges' worth of memory: far below the 256 MiB model
    print(f"child peak {peak / MiB:.1f} MiB")
    assert peak < 5 * RANGE_BYTES, f"the child held {peak / MiB:.1f} MiB for an {RANGE_BYTES // MiB} MiB range"
