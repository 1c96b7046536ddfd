"""Every entry of the one state table's write registry (fma.domain.states.WRITES) is tried from
every state on every connector: the write happens exactly from the states the registry allows
(itself built from the transition table), and no registry entry goes untested."""

from __future__ import annotations

import dataclasses

import pytest

from fma.domain.auth import Role
from fma.domain.errors import Conflict
from fma.domain.experiment import new_round
from fma.domain.registry import RoundRef
from fma.domain.states import WRITES, ExperimentStatus, RoundState, UpdateStatus, allowed, moves

from .contract_records import NOW, experiment, token, update
from .test_state_table import ROUND_WRITES, UPDATE_WRITES, experiment_in, round_in, update_in

SPEC = [{"name": "w", "shape": [2], "dtype": "F32"}]
ASYNC = {"mode": "async", "buffer_size": 3, "max_staleness": 2}


def _accept(repo, exp) -> bool:
    repo.begin_upload(exp.id, 1, "c-9", NOW)
    return repo.accept_update(update(exp.id, "c-9")) == "accepted"


def _accept_buffered(repo, exp, client: str = "c-9") -> bool:
    if client == "c-9":
        repo.begin_upload(exp.id, 1, client, NOW)
    return repo.accept_buffered(update(exp.id, client), 1, 3) == "accepted"


def _stop_fails_round(repo, exp) -> bool:
    before = repo.get_round(exp.id, 1).state
    repo.stop_experiment(exp.id, set(ExperimentStatus), "stopped")
    return before != RoundState.FAILED and repo.get_round(exp.id, 1).state == RoundState.FAILED


def _fork(repo, parent) -> bool:
    child = experiment()
    return repo.create_fork(child, SPEC, "1" * 64, new_round(child, 1, NOW), RoundRef(parent.id, 1), None)


def _publish_round(repo, exp) -> bool:
    return repo.publish_round(exp.id, 1, "w", sha256="b" * 64, metrics={}, info={}, seconds=1.0, now=NOW,
                              next_round=new_round(exp, 2, NOW))


def _publish_version(repo, exp) -> bool:
    return repo.publish_version(exp.id, 1, "w", sha256="b" * 64, metrics={}, info={}, seconds=1.0, now=NOW,
                                complete=False)


#: round writes beyond test_state_table's: (round setup policy, the write; True if it happened)
ROUND_GUARDS = {
    "accept_update.round": ({}, _accept),
    "accept_buffered.round": (ASYNC, _accept_buffered),
    "seal_buffer": (ASYNC, lambda r, e: r.seal_buffer(e.id, 1, 0, NOW, 60, None)),
    "publish_version": (ASYNC, _publish_version),
    "stop_experiment.round": ({}, _stop_fails_round),
    "note_round_sweep_failure": ({}, lambda r, e: r.note_round_sweep_failure(e.id, 1, "boom") > 0),
    "create_fork.parent_round": ({}, _fork),
    "record_aggregation_error": ({}, lambda r, e: r.record_aggregation_error(e.id, 1, "boom")),
}


@pytest.mark.parametrize("write", sorted(ROUND_GUARDS))
def test_round_conditions_hold_from_the_tables_states(connector, write):
    policy, call = ROUND_GUARDS[write]
    happened = {s for s in RoundState if call(connector.repo, round_in(connector.repo, s, **policy))}
    assert happened == allowed(write)


def _register(repo, exp) -> bool:
    enroll = token(Role.ENROLLMENT, experiment_id=exp.id)
    repo.put_token(enroll)
    try:
        repo.register_client(exp.id, "c-9", None, enroll.token_hash, token(Role.CLIENT, experiment_id=exp.id), NOW)
        return True
    except Conflict:
        return False


def aggregating_in(repo, status: ExperimentStatus, **policy):
    """Round 1 AGGREGATING (lease of "w"), its experiment then moved to `status`."""
    exp = round_in(repo, RoundState.AGGREGATING, **policy)
    if status != ExperimentStatus.RUNNING:
        repo.set_status(exp.id, {ExperimentStatus.RUNNING}, status)
    return exp


#: experiment conditions: (how the experiment is set up in a status, the write)
EXPERIMENT_GUARDS = {
    "accept_update.experiment": (experiment_in, _accept),
    "accept_buffered.experiment": (experiment_in, _accept_buffered),
    "seal_buffer.experiment": (experiment_in, lambda r, e: r.seal_buffer(e.id, 1, 0, NOW, 60, None)),
    "publish_round.experiment": (aggregating_in, _publish_round),
    "publish_version.experiment": (lambda r, s: aggregating_in(r, s, **ASYNC), _publish_version),
    "activate": (experiment_in, lambda r, e: r.activate(e.id, SPEC, "a" * 64, new_round(e, 1, NOW))),
    "register_client.experiment": (experiment_in, _register),
    "finish_experiment.completed": (experiment_in, lambda r, e: r.finish_experiment(e.id, ExperimentStatus.COMPLETED)),
    "finish_experiment.failed": (experiment_in, lambda r, e: r.finish_experiment(e.id, ExperimentStatus.FAILED)),
    "finish_experiment.stopped": (experiment_in, lambda r, e: r.finish_experiment(e.id, ExperimentStatus.STOPPED)),
}


@pytest.mark.parametrize("write", sorted(EXPERIMENT_GUARDS))
def test_experiment_conditions_hold_from_the_tables_states(connector, write):
    setup, call = EXPERIMENT_GUARDS[write]
    happened = {s for s in ExperimentStatus if call(connector.repo, setup(connector.repo, s))}
    assert happened == allowed(write)


def _due_again(repo, exp) -> bool:
    repo.push_upload_due(exp.id, 1, "c-1", NOW + 10)
    return any(u.experiment_id == exp.id for u in repo.list_due_uploads(NOW + 20))


def _rejected_again(repo, exp) -> bool:
    repo.reject_update(dataclasses.replace(update(exp.id, "c-1"), reason="AGAIN"))
    current = repo.get_update(exp.id, 1, "c-1")
    return current is not None and current.reason == "AGAIN"


#: update conditions beyond test_state_table's: (the write, whether it may create the record)
UPDATE_GUARDS = {
    "accept_buffered": (lambda r, e: _accept_buffered(r, e, "c-1"), True),
    "note_update_failure": (lambda r, e: r.note_update_failure(e.id, 1, "c-1", "boom", NOW) > 0, False),
    "push_upload_due": (_due_again, False),
}


@pytest.mark.parametrize("write", sorted(UPDATE_GUARDS))
def test_update_conditions_hold_from_the_tables_states(connector, write):
    call, creates = UPDATE_GUARDS[write]
    happened = {s for s in [None, *UpdateStatus] if call(connector.repo, update_in(connector.repo, s))}
    assert happened == set(allowed(write)) | ({None} if creates else set())


def test_a_rejection_seen_again_refreshes_its_reason_only_from_the_tables_states(connector):
    """A first rejection writes the reason (from no record or the table's sources of REJECTED);
    a rejection seen again refreshes it from "reject_update.again" only."""
    happened = {s for s in [None, *UpdateStatus] if _rejected_again(connector.repo, update_in(connector.repo, s))}
    assert happened == {None} | set(allowed("reject_update")) | set(allowed("reject_update.again"))


def test_every_registered_write_is_tried_from_every_state():
    tried = (set(ROUND_WRITES) | set(UPDATE_WRITES) | set(ROUND_GUARDS) | set(EXPERIMENT_GUARDS)
             | set(UPDATE_GUARDS) | {"reject_update.again"})
    assert tried == set(WRITES)


def test_a_write_cannot_allow_what_the_table_forbids():
    from fma.domain.states import EXPERIMENT_TRANSITIONS

    with pytest.raises(ValueError, match="not a transition"):
        moves(EXPERIMENT_TRANSITIONS, ExperimentStatus.RUNNING, only=frozenset({ExperimentStatus.STOPPED}))
    assert allowed("activate") == {ExperimentStatus.PENDING_MODEL}
    assert allowed("finish_experiment.completed") == {ExperimentStatus.RUNNING, ExperimentStatus.PAUSED}
