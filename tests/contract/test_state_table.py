"""Each conditional write of each connector moves from exactly the states that the one state
table (fma.domain.states) allows: the write is tried from every state and must succeed iff
the registry of writes (built from the table) lists that state. test_state_guards.py covers the
registry's other entries and checks that none is left untried."""

from __future__ import annotations

import pytest

from fma.domain.errors import Conflict
from fma.domain.experiment import new_round
from fma.domain.states import (
    ROUND_TRANSITIONS,
    UPDATE_TRANSITIONS,
    ExperimentStatus,
    RoundState,
    UpdateStatus,
    allowed,
    sources,
)

from .contract_records import NOW, accept_all, experiment, running, update


def round_in(repo, state: RoundState, **policy):
    """Round 1 in `state` (a lease of "w" from AGGREGATING on)."""
    exp = running(repo, **({"min_updates": 1, "deadline_seconds": 60} | policy))
    if state == RoundState.FAILED:
        assert repo.fail_round(exp.id, 1, "x")
    if state in (RoundState.OPEN, RoundState.FAILED):
        return exp
    accept_all(repo, exp.id, ["c-1"])
    assert repo.seal_round(exp.id, 1, 1, NOW, 60)
    if state == RoundState.SEALED:
        return exp
    assert repo.acquire_lease(exp.id, 1, "w", NOW, 60)
    if state == RoundState.PUBLISHED:
        assert repo.publish_round(exp.id, 1, "w", sha256="a" * 64, metrics={}, info={}, seconds=1.0, now=NOW,
                                  next_round=new_round(exp, 2, NOW))
    return exp


ROUND_WRITES = {
    "seal_round": (RoundState.SEALED, lambda r, e: r.seal_round(e.id, 1, 0, NOW, 60)),
    "force_seal": (RoundState.SEALED, lambda r, e: r.force_seal(e.id, 1, NOW, 60)),
    "acquire_lease": (RoundState.AGGREGATING, lambda r, e: r.acquire_lease(e.id, 1, "v", NOW + 999, 60) is not None),
    "publish_round": (RoundState.PUBLISHED, lambda r, e: r.publish_round(
        e.id, 1, "w", sha256="b" * 64, metrics={}, info={}, seconds=1.0, now=NOW, next_round=new_round(e, 2, NOW))),
    "fail_round": (RoundState.FAILED, lambda r, e: r.fail_round(e.id, 1, "y")),
    "extend_deadline": (RoundState.OPEN, lambda r, e: r.extend_deadline(e.id, 1, NOW + 500)),
}


@pytest.mark.parametrize("write", sorted(ROUND_WRITES))
def test_round_writes_move_from_the_tables_states(connector, write):
    target, call = ROUND_WRITES[write]
    happened = {state for state in RoundState if call(connector.repo, round_in(connector.repo, state))}
    assert happened == allowed(write) == sources(ROUND_TRANSITIONS, target)


def update_in(repo, status: UpdateStatus | None):
    exp = running(repo)
    if status is None:
        return exp
    repo.begin_upload(exp.id, 1, "c-1", NOW)
    if status == UpdateStatus.REJECTED:
        assert repo.reject_update(update(exp.id, "c-1"))
    elif status == UpdateStatus.LATE:
        assert repo.mark_late(update(exp.id, "c-1"))
    elif status == UpdateStatus.FAILED:
        assert repo.fail_update(exp.id, 1, "c-1", "fault", NOW)
    elif status in (UpdateStatus.ACCEPTED, UpdateStatus.APPLIED):
        assert repo.accept_update(update(exp.id, "c-1")) == "accepted"
        if status == UpdateStatus.APPLIED:
            assert repo.mark_applied(exp.id, 1, "c-1", NOW)
    return exp


def _begin(repo, exp) -> bool:
    try:
        repo.begin_upload(exp.id, 1, "c-1", NOW + 5)
        return True
    except Conflict:
        return False


UPDATE_WRITES = {  # target, call, whether the write may also create the record
    "begin_upload": (UpdateStatus.UPLOADING, _begin, True),
    "accept_update": (UpdateStatus.ACCEPTED, lambda r, e: r.accept_update(update(e.id, "c-1")) == "accepted", True),
    "reject_update": (UpdateStatus.REJECTED, lambda r, e: r.reject_update(update(e.id, "c-1")), True),
    "mark_late": (UpdateStatus.LATE, lambda r, e: r.mark_late(update(e.id, "c-1")), True),
    "mark_applied": (UpdateStatus.APPLIED, lambda r, e: r.mark_applied(e.id, 1, "c-1", NOW), False),
    "fail_update": (UpdateStatus.FAILED, lambda r, e: r.fail_update(e.id, 1, "c-1", "f", NOW), False),
}


@pytest.mark.parametrize("write", sorted(UPDATE_WRITES))
def test_update_writes_move_from_the_tables_states(connector, write):
    target, call, creates = UPDATE_WRITES[write]
    states = [None, *UpdateStatus]
    happened = {s for s in states if call(connector.repo, update_in(connector.repo, s))}
    assert happened == set(allowed(write)) | ({None} if creates else set())
    assert allowed(write) == sources(UPDATE_TRANSITIONS, target)


def experiment_in(repo, status: ExperimentStatus):
    """An experiment in `status` (from RUNNING on, with round 1 OPEN)."""
    if status == ExperimentStatus.PENDING_MODEL:
        exp = experiment()
        repo.create_experiment(exp)
        return exp
    exp = running(repo)
    if status != ExperimentStatus.RUNNING:
        repo.set_status(exp.id, {ExperimentStatus.RUNNING}, status)
    return exp


def test_the_last_round_publishes_and_completes_a_paused_experiment(connector):
    repo = connector.repo
    exp = round_in(repo, RoundState.AGGREGATING)
    repo.set_status(exp.id, {ExperimentStatus.RUNNING}, ExperimentStatus.PAUSED)
    assert repo.publish_round(exp.id, 1, "w", sha256="c" * 64, metrics={}, info={}, seconds=1.0, now=NOW,
                              next_round=None)
    assert repo.get_experiment(exp.id).status == ExperimentStatus.COMPLETED
