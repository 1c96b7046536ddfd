"""Issue 11 on the memory connector: a later object at the initial model's key or at an accepted
update's key (a second POST through a still-valid grant) is never read, and its event changes no
record, no model, no manifest and no listing."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np

from fma.domain.codec import decode, encode
from fma.services import participation, rounds_view
from fma.services.aggregation import aggregate_round
from fma.services.deps import manifest_key, model_key, update_key
from fma.services.ingest import ingest_object

from .service_world import update_file


def rows(world) -> dict:
    """Every metadata row of the memory connector, deep-copied (equal: nothing changed)."""
    return copy.deepcopy(world.repo.rows.tables)


def test_a_later_initial_model_object_is_never_read(world):
    # Given an activated experiment with two clients
    exp_id = world.experiment({"w": np.zeros(3, np.float32)})
    good = world.deps.store.get(model_key(exp_id, 0))
    clients = world.clients(exp_id, 2)
    before = rows(world)
    # When other bytes land at the initial model's key and their event is ingested
    world.deps.store.put(model_key(exp_id, 0), encode({"w": np.full(3, 1000.0, np.float32)}))
    assert ingest_object(world.deps, model_key(exp_id, 0)).status == "duplicate"
    # Then no row changed, the model grant is pinned, and round 1 builds on the validated bytes
    assert rows(world) == before
    exp = world.repo.get_experiment(exp_id)
    assert exp.initial_version_id and f"version={exp.initial_version_id}" in participation.model_info(
        world.deps, world.dev, exp_id)["url"]
    assert f"version={exp.initial_version_id}" in rounds_view.published_model(world.deps, world.dev, exp_id, 0)["url"]
    for c in clients:
        assert world.submit(exp_id, c, 1, {"w": np.ones(3, np.float32)}).status == "accepted"
    call = world.invoker.calls.pop()
    assert aggregate_round(world.deps, call["experiment_id"], call["round"])["status"] == "published"
    manifest = json.loads(world.deps.store.get(manifest_key(exp_id, 1)))
    assert manifest["global_model"]["sha256"] == hashlib.sha256(good).hexdigest()
    assert manifest["global_model"]["version_id"] == exp.initial_version_id


def test_a_later_object_at_an_accepted_update_key_changes_no_listing_model_or_manifest(world):
    exp_id = world.experiment({"w": np.zeros(3, np.float32)})
    first, second = world.clients(exp_id, 2)
    assert world.submit(exp_id, first, 1, {"w": np.ones(3, np.float32)}, examples=2).status == "accepted"
    listing, before = rounds_view.get_round(world.deps, world.dev, exp_id, 1), rows(world)
    key = update_key(exp_id, 1, first.principal_id)
    evil = update_file({"w": np.full(3, 1000.0, np.float32)}, 10**6, 1)
    world.deps.store.put(key, evil)  # what a second POST through the still-valid grant writes
    assert ingest_object(world.deps, key).status == "duplicate"
    assert rounds_view.get_round(world.deps, world.dev, exp_id, 1) == listing and rows(world) == before
    assert world.submit(exp_id, second, 1, {"w": np.full(3, 3.0, np.float32)}, examples=2).status == "accepted"
    call = world.invoker.calls.pop()
    assert aggregate_round(world.deps, call["experiment_id"], call["round"])["status"] == "published"
    published = rounds_view.get_round(world.deps, world.dev, exp_id, 1)
    model = world.deps.store.get(model_key(exp_id, 1))
    manifest = world.deps.store.get(manifest_key(exp_id, 1))
    world.deps.store.put(key, evil)  # and once more after publication
    assert ingest_object(world.deps, key).status == "duplicate"
    assert rounds_view.get_round(world.deps, world.dev, exp_id, 1) == published
    assert world.deps.store.get(model_key(exp_id, 1)) == model
    assert world.deps.store.get(manifest_key(exp_id, 1)) == manifest
    assert np.allclose(decode(model)[0]["w"], 2.0)
