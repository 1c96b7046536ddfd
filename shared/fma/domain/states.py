"""State machines of DESIGN section 5. Experiment transitions are checked here for PATCH; every
round and update transition is a conditional write in the adapters (repo_rounds, repo_lifecycle)."""

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
    ExperimentStatus.PAUSED: frozenset({ExperimentStatus.RUNNING, ExperimentStatus.STOPPED}),
    ExperimentStatus.COMPLETED: frozenset(),
    ExperimentStatus.STOPPED: frozenset(),
    ExperimentStatus.FAILED: frozenset(),
}

#: the statuses a developer may ask for with PATCH; the others are reached by the system.
USER_SETTABLE = frozenset({ExperimentStatus.PAUSED, ExperimentStatus.RUNNING, ExperimentStatus.STOPPED})
