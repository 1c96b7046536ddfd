"""Participation, rounds_view, experiments, aggregation and the sweeper on the memory connector."""

from __future__ import annotations

import numpy as np
import pytest

from fma.domain.auth import Principal, Role
from fma.domain.codec import decode
from fma.domain.errors import Conflict, InvalidInput, NotFound
from fma.domain.states import ExperimentStatus, RoundState, UpdateStatus
from fma.services import experiments, participation, rounds_view
from fma.services.aggregation import aggregate_round
from fma.services.deps import model_key, update_key
from fma.services.sweeper import sweep


def _run_invocations(world) -> list[dict]:
    out = []
    while world.invoker.calls:
        call = world.invoker.calls.pop(0)
        out.append(aggregate_round(world.deps, call["experiment_id"], call["round"]))
    return out


def test_created_experiment_waits_for_its_model_with_an_upload_grant(world):
    created = experiments.create_experiment(world.deps, world.dev, {"name": "digits"})
    exp = created["experiment"]
    assert exp["status"] == "PENDING_MODEL" and exp["owner"] == "dev-1"
    assert created["upload"]["fields"]["key"] == model_key(exp["id"], 0)


def test_developer_pauses_and_resumes_but_cannot_skip_states(world):
    exp_id = world.experiment()
    assert experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "PAUSED"})["status"] == "PAUSED"
    assert experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "RUNNING"})["status"] == "RUNNING"
    with pytest.raises(InvalidInput):
        experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "COMPLETED"})
    other = Principal(Role.DEVELOPER, "dev-2")
    with pytest.raises(NotFound):
        experiments.patch_experiment(world.deps, other, exp_id, {"status": "PAUSED"})
    assert world.repo.get_experiment(exp_id).status == ExperimentStatus.RUNNING


def test_stopping_fails_the_open_round(world):
    exp_id = world.experiment()
    experiments.patch_experiment(world.deps, world.dev, exp_id, {"status": "STOPPED"})
    assert world.repo.get_round(exp_id, 1).state == RoundState.FAILED
    assert world.repo.get_experiment(exp_id).status == ExperimentStatus.STOPPED


def test_upload_grant_names_the_clients_key_and_exact_size(world):
    exp_id = world.experiment()
    [alice] = world.clients(exp_id, 1)
    reply = participation.request_upload(world.deps, alice, exp_id, 1, {"size": 120, "sha256": "0" * 64})
    fields = reply["upload"]["fields"]
    assert (fields["key"], fields["min_size"], fields["max_size"]) == (update_key(exp_id, 1, alice.principal_id),
                                                                      "120", "120")
    assert world.repo.get_update(exp_id, 1, alice.principal_id).status == UpdateStatus.UPLOADING
    with pytest.raises(Conflict) as err:
        participation.request_upload(world.deps, alice, exp_id, 2, {"size": 120, "sha256": "0" * 64})
    assert err.value.code == "ROUND_NOT_OPEN"


def test_model_info_points_at_the_current_model(world):
    exp_id = world.experiment()
    [alice] = world.clients(exp_id, 1)
    info = participation.model_info(world.deps, alice, exp_id)
    assert (info["round"], info["version"]) == (1, 0)
    assert model_key(exp_id, 0) in info["url"].replace("%2F", "/")
    stranger = Principal(Role.CLIENT, "c-x", "other-experiment")
    with pytest.raises(NotFound):  # another experiment's token: not found for it (issue 11)
        participation.model_info(world.deps, stranger, exp_id)


def test_a_round_publishes_the_weighted_mean_and_opens_the_next(world):
    exp_id = world.experiment()
    alice, bob = world.clients(exp_id, 2)
    world.submit(exp_id, alice, 1, {"w": np.full(3, 1.0, np.float32)}, examples=10)
    world.submit(exp_id, bob, 1, {"w": np.full(3, 4.0, np.float32)}, examples=20)
    [result] = _run_invocations(world)
    assert result["status"] == "published"
    model, _ = decode(world.deps.store.get(model_key(exp_id, 1)))
    np.testing.assert_allclose(model["w"], np.full(3, 3.0), rtol=1e-6)
    assert world.repo.get_experiment(exp_id).current_round == 2
    assert {u.status for u in world.repo.list_updates(exp_id, 1)} == {UpdateStatus.APPLIED}
    assert aggregate_round(world.deps, exp_id, 1)["status"] == "already_published"


def test_a_retried_aggregation_writes_the_same_bytes(world):
    exp_id = world.experiment()
    alice, bob = world.clients(exp_id, 2)
    world.submit(exp_id, alice, 1, {"w": np.full(3, 1.5, np.float32)})
    world.submit(exp_id, bob, 1, {"w": np.full(3, 2.5, np.float32)})
    world.invoker.calls.clear()
    assert world.repo.acquire_lease(exp_id, 1, "crashed-worker", world.clock(), 60) is not None
    assert aggregate_round(world.deps, exp_id, 1)["status"] == "busy"
    world.clock.now += 61
    first = world.repo.get_round(exp_id, 1)
    assert first.state == RoundState.AGGREGATING
    result = aggregate_round(world.deps, exp_id, 1)
    assert result["status"] == "published"
    sha = world.repo.get_round(exp_id, 1).model_sha256
    assert result["sha256"] == sha


def test_client_sees_only_its_own_update_in_a_round(world):
    exp_id = world.experiment()
    alice, bob = world.clients(exp_id, 2)
    world.submit(exp_id, alice, 1, {"w": np.ones(3, np.float32)})
    world.submit(exp_id, bob, 1, {"w": np.ones(3, np.float32)})
    seen = rounds_view.get_round(world.deps, alice, exp_id, 1)
    assert [u["client_id"] for u in seen["updates"]] == [alice.principal_id]
    full = rounds_view.get_round(world.deps, world.dev, exp_id, 1)
    assert sorted(u["client_id"] for u in full["updates"]) == [alice.principal_id, bob.principal_id]
    with pytest.raises(NotFound):
        rounds_view.get_round(world.deps, world.dev, exp_id, 9)


def test_evaluations_are_averaged_by_examples(world):
    exp_id = world.experiment()
    alice, bob = world.clients(exp_id, 2)
    participation.post_evaluation(world.deps, alice, exp_id, 0, {"num_examples": 10, "metrics": {"acc": 0.5}})
    participation.post_evaluation(world.deps, bob, exp_id, 0, {"num_examples": 30, "metrics": {"acc": 0.9}})
    with pytest.raises(Conflict):
        participation.post_evaluation(world.deps, bob, exp_id, 0, {"num_examples": 30, "metrics": {"acc": 0.1}})
    detail = rounds_view.round_public(world.repo.get_round(exp_id, 1), [], world.repo.list_evaluations(exp_id, 0),
                                      world.dev)
    assert detail["evaluation_metrics"] == pytest.approx({"acc": 0.8})


def test_sweeper_seals_at_the_deadline_with_enough_updates(world):
    exp_id = world.experiment(min_updates=3, deadline_seconds=60, min_updates_at_deadline=1)
    [alice, _, _] = world.clients(exp_id, 3)
    world.submit(exp_id, alice, 1, {"w": np.ones(3, np.float32)})
    assert sweep(world.deps).sealed == []
    world.clock.now += 61
    assert sweep(world.deps).sealed == [f"{exp_id}/1"]
    assert world.invoker.calls == [{"experiment_id": exp_id, "round": 1}]


def test_sweeper_fails_a_round_short_of_updates_when_the_policy_says_fail(world):
    exp_id = world.experiment(min_updates=3, deadline_seconds=60, on_deadline="fail", min_updates_at_deadline=2)
    world.clock.now += 61
    assert sweep(world.deps).failed == [f"{exp_id}/1"]
    assert world.repo.get_experiment(exp_id).status == ExperimentStatus.FAILED


def test_sweeper_extends_a_deadline_otherwise(world):
    exp_id = world.experiment(min_updates=3, deadline_seconds=60, on_deadline="extend", min_updates_at_deadline=2)
    world.clock.now += 61
    assert sweep(world.deps).extended == [f"{exp_id}/1"]
    assert world.repo.get_round(exp_id, 1).deadline == world.clock.now + 60


def test_sweeper_reinvokes_a_lost_aggregation_then_gives_up(world):
    exp_id = world.experiment()
    alice, bob = world.clients(exp_id, 2)
    world.submit(exp_id, alice, 1, {"w": np.ones(3, np.float32)})
    world.submit(exp_id, bob, 1, {"w": np.ones(3, np.float32)})
    world.invoker.calls.clear()  # the invocation was lost
    world.clock.now += 61
    assert sweep(world.deps).reinvoked == [f"{exp_id}/1"]
    for _ in range(world.deps.limits.max_aggregation_attempts):
        world.repo.acquire_lease(exp_id, 1, "doomed", world.clock(), 60)
        world.clock.now += 61
    assert sweep(world.deps).failed == [f"{exp_id}/1"]
    assert world.repo.get_round(exp_id, 1).reason.startswith("AGGREGATION_FAILED")


def test_sweeper_ingests_an_upload_whose_event_was_lost(world):
    exp_id = world.experiment()
    [alice, _] = world.clients(exp_id, 2)
    participation.put_update(world.deps, alice, exp_id, 1, _file(1))
    world.clock.now += 31
    assert sweep(world.deps).reconciled == [f"{exp_id}/1/{alice.principal_id}:accepted"]
    assert world.repo.get_round(exp_id, 1).accepted == 1


def _file(n: int) -> bytes:
    from .service_world import update_file

    return update_file({"w": np.ones(3, np.float32)}, 4, n)
