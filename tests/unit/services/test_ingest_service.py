"""Ingest on the memory connector: activation, validation, exactly-once counting, one seal."""

from __future__ import annotations

import hashlib

import numpy as np

from fma.domain.codec import encode
from fma.domain.states import ExperimentStatus, RoundState, UpdateStatus
from fma.services import experiments, participation
from fma.services.deps import model_key, update_key
from fma.services.ingest import ingest_object

from .service_world import update_file


def test_initial_model_activates_the_experiment_once(world):
    exp_id = world.experiment({"dense/kernel": np.ones((2, 3), np.float32)})
    exp = world.repo.get_experiment(exp_id)
    assert (exp.status, exp.current_round, exp.model_version) == (ExperimentStatus.RUNNING, 1, 0)
    assert exp.model_spec == [{"name": "dense/kernel", "dtype": "F32", "shape": [2, 3]}]
    assert ingest_object(world.deps, model_key(exp_id, 0)).status == "duplicate"
    assert world.repo.get_round(exp_id, 1).state == RoundState.OPEN


def test_broken_initial_model_is_reported_and_the_experiment_waits(world):
    exp_id = experiments.create_experiment(world.deps, world.dev, {"name": "x"})["experiment"]["id"]
    world.deps.store.put(model_key(exp_id, 0), b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    outcome = ingest_object(world.deps, model_key(exp_id, 0))
    exp = world.repo.get_experiment(exp_id)
    assert outcome.status == "rejected" and exp.model_error.startswith("NOT_SAFETENSORS")
    assert exp.status == ExperimentStatus.PENDING_MODEL


def test_valid_update_is_accepted_and_a_redelivery_changes_nothing(world):
    exp_id = world.experiment()
    [alice, _] = world.clients(exp_id, 2)
    assert world.submit(exp_id, alice, 1, {"w": np.ones(3, np.float32)}).status == "accepted"
    again = ingest_object(world.deps, update_key(exp_id, 1, alice.principal_id))
    assert again.status == "duplicate"
    rnd = world.repo.get_round(exp_id, 1)
    assert (rnd.accepted, rnd.rejected, rnd.state) == (1, 0, RoundState.OPEN)
    upd = world.repo.get_update(exp_id, 1, alice.principal_id)
    assert (upd.status, upd.num_examples, upd.version_id is not None) == (UpdateStatus.ACCEPTED, 10, True)


def test_update_of_the_wrong_shape_is_rejected_with_a_reason(world):
    exp_id = world.experiment()
    [alice] = world.clients(exp_id, 1)
    outcome = world.submit(exp_id, alice, 1, {"w": np.ones(4, np.float32)})
    assert outcome.status == "rejected" and outcome.reason.startswith("WRONG_SHAPE")
    assert world.repo.get_update(exp_id, 1, alice.principal_id).reason == outcome.reason
    assert world.repo.get_round(exp_id, 1).rejected == 1


def test_update_without_num_examples_is_rejected(world):
    exp_id = world.experiment()
    [alice] = world.clients(exp_id, 1)
    world.deps.repo.begin_upload(exp_id, 1, alice.principal_id, world.clock(), 30)
    world.deps.store.put(update_key(exp_id, 1, alice.principal_id), update_file({"w": np.ones(3, np.float32)}, None))
    outcome = ingest_object(world.deps, update_key(exp_id, 1, alice.principal_id))
    assert outcome.status == "rejected" and outcome.reason.startswith("MISSING_NUM_EXAMPLES")


def test_quota_seals_the_round_and_invokes_aggregation_once(world):
    exp_id = world.experiment()
    alice, bob, carol = world.clients(exp_id, 3)
    assert world.submit(exp_id, alice, 1, {"w": np.ones(3, np.float32)}).sealed is False
    assert world.submit(exp_id, bob, 1, {"w": np.ones(3, np.float32)}).sealed is True
    assert ingest_object(world.deps, update_key(exp_id, 1, bob.principal_id)).sealed is False
    assert world.invoker.calls == [{"experiment_id": exp_id, "round": 1}]
    assert world.repo.get_round(exp_id, 1).state == RoundState.SEALED
    late = update_file({"w": np.ones(3, np.float32)}, 5, 1)  # requested before the seal, arriving after it
    world.deps.repo.begin_upload(exp_id, 1, carol.principal_id, world.clock(), 30,
                                 sha256=hashlib.sha256(late).hexdigest())
    world.deps.store.put(update_key(exp_id, 1, carol.principal_id), late)
    assert ingest_object(world.deps, update_key(exp_id, 1, carol.principal_id)).status == "late"
    assert world.repo.get_round(exp_id, 1).late == 1


def test_update_while_paused_is_deferred_then_reconciled(world):
    exp_id = world.experiment()
    [alice, _] = world.clients(exp_id, 2)
    data = update_file({"w": np.ones(3, np.float32)}, 3, 1)
    world.deps.repo.begin_upload(exp_id, 1, alice.principal_id, world.clock(), 30,
                                 sha256=hashlib.sha256(data).hexdigest())
    experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "PAUSED"})
    world.deps.store.put(update_key(exp_id, 1, alice.principal_id), data)
    assert ingest_object(world.deps, update_key(exp_id, 1, alice.principal_id)).status == "deferred"
    assert world.repo.get_round(exp_id, 1).accepted == 0
    experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "RUNNING"})
    assert ingest_object(world.deps, update_key(exp_id, 1, alice.principal_id)).status == "accepted"


def test_unknown_keys_are_ignored(world):
    assert ingest_object(world.deps, "uploads/../../etc/passwd").status == "ignored"
    assert ingest_object(world.deps, update_key("nope", 1, "c-1")).status == "ignored"
    world.deps.store.put("models/nope/00000000.safetensors", encode({"w": np.zeros(1, np.float32)}))
    assert ingest_object(world.deps, "models/nope/00000000.safetensors").status == "ignored"


def _counting_experiment_reads(world, monkeypatch) -> list[str]:
    reads: list[str] = []
    original = world.repo.get_experiment

    def counting(experiment_id):
        reads.append(experiment_id)
        return original(experiment_id)

    monkeypatch.setattr(world.repo, "get_experiment", counting)
    return reads


def test_an_accept_below_the_quota_reads_the_experiment_once(world, monkeypatch):
    """The experiment item is read consistently by every request (the hottest item at 100,000
    clients): ingesting an accept that does not meet the quota reads it once, the sealing one
    twice (is the experiment still running?)."""
    exp_id = world.experiment(min_updates=3)
    clients = world.clients(exp_id, 3)
    reads = _counting_experiment_reads(world, monkeypatch)
    sealed, per_ingest = [], []
    for client in clients:
        participation.put_update(world.deps, client, exp_id, 1, update_file({"w": np.ones(3, np.float32)}, 10, 1))
        reads.clear()
        sealed.append(ingest_object(world.deps, update_key(exp_id, 1, client.principal_id)).sealed)
        per_ingest.append(len(reads))
    assert (sealed, per_ingest) == ([False, False, True], [1, 1, 2])
    assert world.invoker.calls == [{"experiment_id": exp_id, "round": 1}]


def test_a_quota_met_after_a_stop_does_not_seal(world, monkeypatch):
    """The one read that decides the seal comes after the accept: a stop that lands between this
    ingest's first read and its seal is seen, and nothing is aggregated."""
    exp_id = world.experiment(min_updates=1)
    [alice] = world.clients(exp_id, 1)
    original = world.repo.accept_update

    def accept_then_stop(record):
        result = original(record)
        experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "STOPPED"})
        return result

    monkeypatch.setattr(world.repo, "accept_update", accept_then_stop)
    outcome = world.submit(exp_id, alice, 1, {"w": np.ones(3, np.float32)})
    assert (outcome.status, outcome.sealed) == ("accepted", False)
    assert world.invoker.calls == []
