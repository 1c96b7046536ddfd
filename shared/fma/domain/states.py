"""State machines of DESIGN section 5. Transitions are enforced again by conditional writes."""

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


EXPERIMENT_TRANSITIONS: dict[ExperimentStatus, frozenset[ExperimentStatus]] = {
    ExperimentStatus.PENDING_MODEL: frozenset({ExperimentStatus.RUNNING, ExperimentStatus.STOPPED}),
    ExperimentStatus.RUNNING: frozenset({
        ExperimentStatus.PAUSED, ExperimentStatus.STOPPED, ExperimentStatus.COMPLETED, ExperimentStatus.FAILED,
    }),
    ExperimentStatus.PAUSED: frozenset({ExperimentStatus.RUNNING, ExperimentStatus.STOPPED}),
    ExperimentStatus.COMPLETED: frozenset(),
    ExperimentStatus.STOPPED: frozenset(),
    ExperimentStatus.FAILED: frozenset(),
}

#: the statuses a developer may ask for with PATCH; the others are reached by the system.
USER_SETTABLE = frozenset({ExperimentStatus.PAUSED, ExperimentStatus.RUNNING, ExperimentStatus.STOPPED})

ROUND_TRANSITIONS: dict[RoundState, frozenset[RoundState]] = {
    RoundState.OPEN: frozenset({RoundState.SEALED, RoundState.FAILED}),
    RoundState.SEALED: frozenset({RoundState.AGGREGATING, RoundState.FAILED}),
    RoundState.AGGREGATING: frozenset({RoundState.PUBLISHED, RoundState.AGGREGATING, RoundState.FAILED}),
    RoundState.PUBLISHED: frozenset(),
    RoundState.FAILED: frozenset(),
}

UPDATE_TRANSITIONS: dict[UpdateStatus, frozenset[UpdateStatus]] = {
    UpdateStatus.UPLOADING: frozenset({UpdateStatus.ACCEPTED, UpdateStatus.REJECTED, UpdateStatus.LATE}),
    UpdateStatus.REJECTED: frozenset({UpdateStatus.UPLOADING, UpdateStatus.ACCEPTED, UpdateStatus.REJECTED,
                                      UpdateStatus.LATE}),
    UpdateStatus.ACCEPTED: frozenset({UpdateStatus.APPLIED}),
    UpdateStatus.LATE: frozenset(),
    UpdateStatus.APPLIED: frozenset(),
}


def can_transition(table: dict, current: StrEnum, target: StrEnum) -> bool:
    return target in table.get(current, frozenset())
