"""An aggregation attempt whose publish loses removes what it wrote (services/unpublished.py):
its model and state versions unless the round was published by another attempt, and its manifest
only when the round can no longer publish (another attempt may have adopted it)."""

from __future__ import annotations

import hashlib

import numpy as np

from fma.services.aggregation import build_model, publish
from fma.services.deps import manifest_key, model_key
from fma.services.unpublished import Written


def sealed(world) -> str:
    exp_id = world.experiment()
    for client, value in zip(world.clients(exp_id, 2), (1.0, 3.0), strict=True):
        world.submit(exp_id, client, 1, {"w": np.full(3, value, np.float32)})
    world.invoker.calls.clear()
    return exp_id


def attempt(world, exp_id: str, owner: str) -> tuple[Written, tuple]:
    """An attempt that took the lease and wrote its outputs, not yet published."""
    started = world.clock()
    assert world.repo.acquire_lease(exp_id, 1, owner, started, 60) is not None
    written = Written()
    built = build_model(world.deps, world.repo.get_experiment(exp_id), 1, written=written)
    return written, (started, *built)


def finish(world, exp_id: str, owner: str, written: Written, built: tuple) -> dict:
    exp, rnd = world.repo.get_experiment(exp_id), world.repo.get_round(exp_id, 1)
    return publish(world.deps, exp, rnd, owner, *built, written)


def versions(world, key: str) -> int:
    return len(world.deps.store.objects.get(key, []))


def test_a_loser_while_another_attempt_holds_the_lease_removes_its_model_but_keeps_the_manifest(world):
    exp_id = sealed(world)
    first, built_first = attempt(world, exp_id, "first")
    world.clock.now += 61  # the first attempt's lease expires; a second takes the round over
    second, built_second = attempt(world, exp_id, "second")
    assert second.manifest is None  # the manifest is written once: the second adopted the first's
    lost = finish(world, exp_id, "first", first, built_first)
    assert lost["status"] == "lost_lease" and lost["discarded"] == {"removed": [model_key(exp_id, 1)], "left": []}
    assert versions(world, model_key(exp_id, 1)) == 1 and versions(world, manifest_key(exp_id, 1)) == 1
    assert finish(world, exp_id, "second", second, built_second)["status"] == "published"
    rnd = world.repo.get_round(exp_id, 1)
    assert rnd.model_sha256 == hashlib.sha256(world.deps.store.get(model_key(exp_id, 1))).hexdigest()
    assert rnd.info["manifest_sha256"] == hashlib.sha256(world.deps.store.get(manifest_key(exp_id, 1))).hexdigest()


def test_a_loser_after_another_attempt_published_removes_nothing(world):
    exp_id = sealed(world)
    first, built_first = attempt(world, exp_id, "first")
    world.clock.now += 61
    second, built_second = attempt(world, exp_id, "second")
    assert finish(world, exp_id, "second", second, built_second)["status"] == "published"
    lost = finish(world, exp_id, "first", first, built_first)
    assert lost["status"] == "lost_lease" and lost["discarded"] == {"removed": [], "left": []}
    assert versions(world, model_key(exp_id, 1)) == 2  # byte-identical versions of the published model
    assert len({data for _, data in world.deps.store.objects[model_key(exp_id, 1)]}) == 1


def test_a_version_that_cannot_be_removed_is_reported_and_the_outcome_stands(world, monkeypatch):
    exp_id = sealed(world)
    first, built_first = attempt(world, exp_id, "first")
    world.repo.stop_experiment(exp_id, {world.repo.get_experiment(exp_id).status}, "EXPERIMENT_STOPPED: test")

    def locked(key, version_id):
        raise PermissionError("object lock retention")

    monkeypatch.setattr(world.deps.store, "delete_version", locked)
    lost = finish(world, exp_id, "first", first, built_first)
    assert lost["status"] == "lost_lease"
    assert sorted(lost["discarded"]["left"]) == [manifest_key(exp_id, 1), model_key(exp_id, 1)]
