"""State machines of DESIGN section 5: the one table of every transition of experiments, rounds
and updates. PATCH checks experiment transitions here; every round and update transition is a
conditional write in a connector, whose allowed "from" states are `sources(table, target)`
(tests/contract/test_state_table.py checks each write of each connector against this table)."""

from __future__ import annotations

from enum import StrEnum


class ExperimentStatus(StrEnum):
    PENDING_MODEL = "PENDING_MODEL"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


class RoundState(StrEnum):
    OPEN = "OPEN"
    SEALED = "SEALED"
    AGGREGATING = "AGGREGATING"
    PUBLISHED = "PUBLISHED"
    FAILED = "FAILED"


class UpdateStatus(StrEnum):
    UPLOADING = "UPLOADING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    LATE = "LATE"
    APPLIED = "APPLIED"
    # ingest failed for a reason that is not the client's (a fault), after bounded retries.
    FAILED = "FAILED"


EXPERIMENT_TRANSITIONS: dict[ExperimentStatus, frozenset[ExperimentStatus]] = {
    ExperimentStatus.PENDING_MODEL: frozenset({ExperimentStatus.RUNNING, ExperimentStatus.STOPPED}),
    ExperimentStatus.RUNNING: frozenset({
        ExperimentStatus.PAUSED, ExperimentStatus.STOPPED, ExperimentStatus.COMPLETED, ExperimentStatus.FAILED,
    }),
    # a paused experiment still completes (its last round was sealed before the pause) or fails
    ExperimentStatus.PAUSED: frozenset({
        ExperimentStatus.RUNNING, ExperimentStatus.STOPPED, ExperimentStatus.COMPLETED, ExperimentStatus.FAILED,
    }),
    ExperimentStatus.COMPLETED: frozenset(),
    ExperimentStatus.STOPPED: frozenset(),
    ExperimentStatus.FAILED: frozenset(),
}

#: the statuses a developer may ask for with PATCH; the others are reached by the system.
USER_SETTABLE = frozenset({ExperimentStatus.PAUSED, ExperimentStatus.RUNNING, ExperimentStatus.STOPPED})

#: the statuses of an experiment that is over (nothing leaves them).
ENDED = frozenset(s for s, targets in EXPERIMENT_TRANSITIONS.items() if not targets)

ROUND_TRANSITIONS: dict[RoundState, frozenset[RoundState]] = {
    RoundState.OPEN: frozenset({RoundState.OPEN, RoundState.SEALED, RoundState.FAILED}),  # OPEN->OPEN: deadline
    RoundState.SEALED: frozenset({RoundState.AGGREGATING, RoundState.FAILED}),
    # AGGREGATING->AGGREGATING: an expired lease is taken over by another runner
    RoundState.AGGREGATING: frozenset({RoundState.AGGREGATING, RoundState.PUBLISHED, RoundState.FAILED}),
    RoundState.PUBLISHED: frozenset(),
    RoundState.FAILED: frozenset(),
}

UPDATE_TRANSITIONS: dict[UpdateStatus, frozenset[UpdateStatus]] = {
    # UPLOADING->UPLOADING and REJECTED->UPLOADING: the client uploads again
    UpdateStatus.UPLOADING: frozenset({UpdateStatus.UPLOADING, UpdateStatus.ACCEPTED, UpdateStatus.REJECTED,
                                       UpdateStatus.LATE, UpdateStatus.FAILED}),
    UpdateStatus.REJECTED: frozenset({UpdateStatus.UPLOADING, UpdateStatus.ACCEPTED, UpdateStatus.LATE}),
    # FAILED (a server-side fault after bounded retries) may be sent again, like REJECTED
    UpdateStatus.FAILED: frozenset({UpdateStatus.UPLOADING, UpdateStatus.ACCEPTED, UpdateStatus.LATE}),
    UpdateStatus.ACCEPTED: frozenset({UpdateStatus.APPLIED}),
    UpdateStatus.LATE: frozenset(),
    UpdateStatus.APPLIED: frozenset(),
}


def sources(table: dict, target: StrEnum) -> frozenset:
    """Every state from which `table` allows moving to `target`: a conditional write's "from" set."""
    return frozenset(s for s, targets in table.items() if target in targets)
