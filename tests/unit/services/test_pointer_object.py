"""The pointer object (services/pointer.py) follows every change a waiting client acts on, two
racing writers leave it current, and a failed pointer write never undoes the change."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fma.adapters.invoker import RecordingInvoker
from fma.adapters.memory import MemoryModelStore, MemoryRepository
from fma.domain.states import ExperimentStatus
from fma.services import experiments
from fma.services.aggregation import aggregate_round
from fma.services.deps import Deps, Limits
from fma.services.pointer import PointerPublishing, pointer_body, pointer_key, refresh_pointer

from .service_world import Clock, World


@pytest.fixture
def world() -> World:
    clock, invoker, store = Clock(), RecordingInvoker(), MemoryModelStore()
    deps = Deps(repo=PointerPublishing(MemoryRepository(), store), store=store, invoker=invoker,
                limits=Limits(lease_seconds=60, reconcile_grace_seconds=30), clock=clock)
    return World(deps, clock, invoker)


def pointer(world: World, exp_id: str) -> dict:
    exp = world.repo.get_experiment(exp_id)
    return json.loads(world.deps.store.get(pointer_key(exp_id, exp.poll_id)))


def test_the_pointer_follows_activation_publish_pause_resume_and_the_end(world):
    exp_id = world.experiment(total_rounds=2)
    exp = world.repo.get_experiment(exp_id)
    assert len(exp.poll_id) == 32 and exp.poll_id != exp_id
    first = pointer(world, exp_id)
    assert (first["status"], first["current_round"], first["model_version"]) == ("RUNNING", 1, 0)
    assert first["model_sha256"] == exp.model_sha256 and first["mode"] == "sync"
    for n in (1, 2):
        for client, value in zip(world.clients(exp_id, 2), (1.0, 3.0), strict=True):
            world.submit(exp_id, client, n, {"w": np.full(3, value, np.float32)})
        assert aggregate_round(world.deps, exp_id, n)["status"] == "published"
        now = pointer(world, exp_id)
        assert now["model_version"] == n and now["model_sha256"] == world.repo.get_experiment(exp_id).model_sha256
        if n == 1:
            assert (now["status"], now["current_round"]) == ("RUNNING", 2)
            experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "PAUSED"})
            assert pointer(world, exp_id)["status"] == "PAUSED"
            experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "RUNNING"})
            assert pointer(world, exp_id)["status"] == "RUNNING"
    assert pointer(world, exp_id)["status"] == "COMPLETED"


def test_a_stop_rewrites_the_pointer(world):
    exp_id = world.experiment()
    experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "STOPPED"})
    assert pointer(world, exp_id)["status"] == "STOPPED"


def test_racing_writers_converge_on_the_stored_experiment(world):
    """A writer that read the experiment before a later change and whose PUT lands last re-reads
    and writes again: the pointer ends as the stored experiment, whatever the order."""
    exp_id = world.experiment()
    inner: MemoryRepository = world.repo._repo
    store = world.deps.store
    put = store.put
    raced = []

    def late_put(key, data, content_type="application/octet-stream"):
        if not raced:  # the first PUT: another writer's change commits (and writes) before it lands
            raced.append(True)
            inner.set_status(exp_id, {ExperimentStatus.RUNNING}, ExperimentStatus.PAUSED)
            refresh_pointer(inner, store, exp_id)
        return put(key, data, content_type)

    store.put = late_put
    assert refresh_pointer(inner, store, exp_id)
    assert pointer(world, exp_id) == pointer_body(inner.get_experiment(exp_id)) and \
        pointer(world, exp_id)["status"] == "PAUSED"


def test_a_failed_pointer_write_does_not_undo_the_change(world):
    exp_id = world.experiment()
    before = pointer(world, exp_id)

    def broken(*_args, **_kwargs):
        raise OSError("S3 is unreachable")

    world.deps.store.put = broken
    out = experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "PAUSED"})
    assert out["status"] == "PAUSED" and world.repo.get_experiment(exp_id).status == ExperimentStatus.PAUSED
    assert pointer(world, exp_id) == before  # stale until the next write; the SDK's API fallback covers it


def test_registrations_get_the_poll_url_reading_the_experiment_once_per_process(world, monkeypatch):
    """A poll id never changes, so the registrations of one process read the experiment item
    (the hottest item of a large round) for it once; the URL is the one GET /model gives."""
    from fma.domain.auth import Principal, Role, hash_token
    from fma.services import participation

    world.deps.pointer_base_url = "https://cdn.example/"
    exp_id = world.experiment()
    token = experiments.create_enrollment_token(world.deps, world.dev, exp_id, {"max_uses": 3})["token"]
    enroll = Principal(Role.ENROLLMENT, "enroll", exp_id, hash_token(token))
    reads: list[str] = []
    original = world.repo.get_experiment
    monkeypatch.setattr(world.repo, "get_experiment", lambda i: reads.append(i) or original(i))
    made = [experiments.register_client(world.deps, enroll, exp_id, {}) for _ in range(3)]
    assert reads == [exp_id]
    exp = original(exp_id)
    expected = f"https://cdn.example/{pointer_key(exp_id, exp.poll_id)}"
    assert [m["poll_url"] for m in made] == [expected] * 3
    client = Principal(Role.CLIENT, made[0]["client_id"], exp_id, hash_token(made[0]["token"]))
    assert participation.model_info(world.deps, client, exp_id)["poll_url"] == expected


def test_a_registration_without_a_pointer_host_has_no_poll_url(world):
    from fma.domain.auth import Principal, Role, hash_token

    exp_id = world.experiment()
    token = experiments.create_enrollment_token(world.deps, world.dev, exp_id, {"max_uses": 1})["token"]
    enroll = Principal(Role.ENROLLMENT, "enroll", exp_id, hash_token(token))
    assert experiments.register_client(world.deps, enroll, exp_id, {})["poll_url"] is None
