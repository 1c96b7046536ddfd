"""Streaming ingest (issue 13 item 3): a 2 GiB update is checked over ranged reads of at most
16 MiB, with ingest memory O(chunk) whatever the update's size."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from fma.adapters.invoker import RecordingInvoker
from fma.adapters.memory import MemoryModelStore, MemoryRepository
from fma.domain.ranged import MAX_RANGE_BYTES
from fma.domain.states import UpdateStatus
from fma.services import experiments, participation
from fma.services.deps import Deps, Limits, model_key, update_key
from fma.services.ingest import ingest_object

from .service_world import Clock, World
from .synthetic_store import SyntheticStore, one_tensor

GIB = 1 << 30
NUMEL = 2 * GIB // 4  # one float32 tensor of 2 GiB
BASE = np.linspace(-1.0, 1.0, 1024, dtype=np.float32)


@pytest.fixture
def big_world() -> tuple[World, SyntheticStore]:
    store = SyntheticStore(MemoryModelStore())
    clock, invoker = Clock(), RecordingInvoker()
    deps = Deps(repo=MemoryRepository(), store=store, invoker=invoker,
                limits=Limits(max_update_bytes=50 * 10**9, lease_seconds=60), clock=clock)
    return World(deps, clock, invoker), store


def _traced_peak(fn) -> tuple[object, int]:
    """fn()'s result and the most memory it held above what was held before it ran."""
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak - baseline


def _experiment_with_big_model(world: World, store: SyntheticStore, max_update_norm: float, numel: int = NUMEL) -> str:
    body = {"name": "big", "max_update_bytes": 3 * GIB, "rounds": {"min_updates": 1, "total_rounds": 2},
            "update_limits": {"max_update_norm": max_update_norm}}
    exp_id = experiments.create_experiment(world.deps, world.dev, body)["experiment"]["id"]
    store.add(model_key(exp_id, 0), one_tensor("w", numel, BASE))
    outcome, peak = _traced_peak(lambda: ingest_object(world.deps, model_key(exp_id, 0)))
    assert outcome.status == "activated", outcome
    assert peak < 64 << 20, f"initial-model ingest held {peak / 2**20:.1f} MiB above baseline"
    return exp_id


def test_a_2_gib_update_is_ingested_in_bounded_memory(big_world):
    # Given an experiment whose model is one 2 GiB tensor, with a norm bound (so the global model
    # is read too), and a client that asked to upload a 2 GiB update of the sha256 it declared
    world, store = big_world
    exp_id = _experiment_with_big_model(world, store, max_update_norm=1e6)
    (client,) = world.clients(exp_id, 1)
    update = one_tensor("w", NUMEL, BASE + np.float32(0.001), {"fma.num_examples": "5", "fma.round": "1"})
    participation.request_upload(world.deps, client, exp_id, 1, {"size": update.size, "sha256": update.sha256()})
    key = update_key(exp_id, 1, client.principal_id)
    store.add(key, update)
    # When ingest sees the object
    outcome, peak = _traced_peak(lambda: ingest_object(world.deps, key))
    # Then it is accepted (the round seals), every read was at most 16 MiB, nothing was read whole,
    # and ingest held less than 64 MiB above its baseline
    assert outcome.status == "accepted" and outcome.sealed, outcome
    rec = world.repo.get_update(exp_id, 1, client.principal_id)
    assert rec.status == UpdateStatus.ACCEPTED and rec.size == update.size == 2 * GIB + len(update.header)
    assert rec.sha256 == update.sha256() and rec.version_id == "v1"
    assert 0 < store.largest_read <= MAX_RANGE_BYTES and store.whole_reads == []
    assert peak < 64 << 20, f"ingest held {peak / 2**20:.1f} MiB above baseline"


def test_an_update_beyond_the_norm_bound_is_rejected_in_bounded_memory(big_world):
    # Given a 256 MiB model with a norm bound the update exceeds (|delta| = 0.5 on 2^26 elements)
    world, store = big_world
    numel = 64 << 20
    exp_id = _experiment_with_big_model(world, store, max_update_norm=100.0, numel=numel)
    (client,) = world.clients(exp_id, 1)
    update = one_tensor("w", numel, BASE + np.float32(0.5), {"fma.num_examples": "5"})
    participation.request_upload(world.deps, client, exp_id, 1, {"size": update.size, "sha256": update.sha256()})
    key = update_key(exp_id, 1, client.principal_id)
    store.add(key, update)
    # When it is ingested
    outcome, peak = _traced_peak(lambda: ingest_object(world.deps, key))
    # Then it is REJECTED for its norm, and nothing was counted
    assert outcome.status == "rejected" and outcome.reason.startswith("NORM_TOO_LARGE"), outcome
    assert world.repo.get_round(exp_id, 1).accepted == 0
    assert peak < 64 << 20


def test_a_model_holding_nan_is_refused_as_the_experiments_model_error(big_world):
    world, store = big_world
    exp_id = experiments.create_experiment(world.deps, world.dev, {"name": "nan"})["experiment"]["id"]
    store.add(model_key(exp_id, 0), one_tensor("w", 8 << 20, np.array([0.0, np.nan], np.float32)))
    assert ingest_object(world.deps, model_key(exp_id, 0)).status == "rejected"
    assert world.repo.get_experiment(exp_id).model_error.startswith("NON_FINITE")


def test_a_client_cannot_pass_off_the_same_size_with_other_bytes(big_world):
    world, store = big_world
    exp_id = _experiment_small(world, store)
    (client,) = world.clients(exp_id, 1)
    declared = one_tensor("w", 4 << 20, BASE, {"fma.num_examples": "5"})
    sent = one_tensor("w", 4 << 20, BASE[::-1].copy(), {"fma.num_examples": "5"})
    participation.request_upload(world.deps, client, exp_id, 1, {"size": declared.size, "sha256": declared.sha256()})
    store.add(update_key(exp_id, 1, client.principal_id), sent)
    outcome = ingest_object(world.deps, update_key(exp_id, 1, client.principal_id))
    assert outcome.status == "rejected" and outcome.reason.startswith("SHA256_MISMATCH")


def _experiment_small(world: World, store: SyntheticStore) -> str:
    exp_id = experiments.create_experiment(world.deps, world.dev, {"name": "s"})["experiment"]["id"]
    store.add(model_key(exp_id, 0), one_tensor("w", 4 << 20, BASE))
    assert ingest_object(world.deps, model_key(exp_id, 0)).status == "activated"
    return exp_id
