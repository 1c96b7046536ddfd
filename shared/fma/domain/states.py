"""State machines of DESIGN section 5: the one table of every transition of experiments, rounds
and updates. PATCH checks experiment transitions here; every other transition is a conditional
write in a connector, whose allowed "from" states come from `WRITES` (each entry the table's
`sources` of its target, or one of the few conditions that move nothing, listed once below).

Connectors build every state condition from `allowed(write)` (tests/unit/
test_adapters_ask_the_state_table.py finds none of their own); tests/contract/test_state_table.py
and test_state_guards.py try each entry from every state on every connector."""

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


def moves(table: dict, target: StrEnum, only: frozenset | None = None) -> frozenset:
    """The "from" states of a write that moves an entity to `target`: the table's sources, or
    `only` for a write that takes just some of the edges into `target` (they must be edges of
    the table: a write can never allow what the table forbids)."""
    allowed = sources(table, target)
    if only is not None and not only <= allowed:
        raise ValueError(f"{sorted(only - allowed)} -> {target} is not a transition of the state table")
    return allowed if only is None else frozenset(only)


#: Conditions that move nothing, each listed once: an experiment takes updates (and seals async
#: buffers) only while RUNNING; a round counts updates only while OPEN; a fork starts only from
#: a PUBLISHED round.
TAKING_UPDATES = frozenset({ExperimentStatus.RUNNING})
COUNTING_UPDATES = frozenset({RoundState.OPEN})
#: the updates a round aggregates (what `list_updates(..., accepted_only=True)` returns).
AGGREGATED = frozenset({UpdateStatus.ACCEPTED, UpdateStatus.APPLIED})
FORKABLE = frozenset({RoundState.PUBLISHED})

#: Every state condition of every connector write, by "<method>" (the entity the method moves)
#: or "<method>.<entity>" (a condition on another entity in the same transaction). Connectors
#: build their conditions from `allowed(...)` and repeat no state list; the contract test
#: (tests/contract/test_state_table.py) tries each entry from every state on every connector.
WRITES: dict[str, frozenset] = {
    "begin_upload": moves(UPDATE_TRANSITIONS, UpdateStatus.UPLOADING),
    "accept_update": moves(UPDATE_TRANSITIONS, UpdateStatus.ACCEPTED),
    "accept_update.round": COUNTING_UPDATES,
    "accept_update.experiment": TAKING_UPDATES,
    "accept_buffered": moves(UPDATE_TRANSITIONS, UpdateStatus.ACCEPTED),
    "accept_buffered.round": COUNTING_UPDATES,
    "accept_buffered.experiment": TAKING_UPDATES,
    "reject_update": moves(UPDATE_TRANSITIONS, UpdateStatus.REJECTED),
    # a rejection seen again (a redelivered event) refreshes the reason and counts nothing
    "reject_update.again": frozenset({UpdateStatus.REJECTED}),
    "mark_late": moves(UPDATE_TRANSITIONS, UpdateStatus.LATE),
    "mark_applied": moves(UPDATE_TRANSITIONS, UpdateStatus.APPLIED),
    "fail_update": moves(UPDATE_TRANSITIONS, UpdateStatus.FAILED),
    # a fault is counted, and an overdue upload watched, while the update may still fail
    "note_update_failure": moves(UPDATE_TRANSITIONS, UpdateStatus.FAILED),
    "push_upload_due": moves(UPDATE_TRANSITIONS, UpdateStatus.FAILED),
    "seal_round": moves(ROUND_TRANSITIONS, RoundState.SEALED),
    "force_seal": moves(ROUND_TRANSITIONS, RoundState.SEALED),
    "seal_buffer": moves(ROUND_TRANSITIONS, RoundState.SEALED),
    "seal_buffer.experiment": TAKING_UPDATES,
    "acquire_lease": moves(ROUND_TRANSITIONS, RoundState.AGGREGATING),
    "publish_round": moves(ROUND_TRANSITIONS, RoundState.PUBLISHED),
    # an experiment publishes while it may still complete (the last round completes it)
    "publish_round.experiment": moves(EXPERIMENT_TRANSITIONS, ExperimentStatus.COMPLETED),
    "publish_version": moves(ROUND_TRANSITIONS, RoundState.PUBLISHED),
    "publish_version.experiment": moves(EXPERIMENT_TRANSITIONS, ExperimentStatus.COMPLETED),
    "extend_deadline": moves(ROUND_TRANSITIONS, RoundState.OPEN),
    "fail_round": moves(ROUND_TRANSITIONS, RoundState.FAILED),
    # a stop fails the current round if it may still fail; a failing sweep is counted likewise
    "stop_experiment.round": moves(ROUND_TRANSITIONS, RoundState.FAILED),
    "note_round_sweep_failure": moves(ROUND_TRANSITIONS, RoundState.FAILED),
    # an aggregation error is kept while the round waits for its model (it may still aggregate)
    "record_aggregation_error": moves(ROUND_TRANSITIONS, RoundState.AGGREGATING),
    "activate": moves(EXPERIMENT_TRANSITIONS, ExperimentStatus.RUNNING,
                      only=frozenset({ExperimentStatus.PENDING_MODEL})),
    "finish_experiment.completed": moves(EXPERIMENT_TRANSITIONS, ExperimentStatus.COMPLETED),
    "finish_experiment.failed": moves(EXPERIMENT_TRANSITIONS, ExperimentStatus.FAILED),
    "finish_experiment.stopped": moves(EXPERIMENT_TRANSITIONS, ExperimentStatus.STOPPED),
    "register_client.experiment": frozenset(ExperimentStatus) - ENDED,
    "create_fork.parent_round": FORKABLE,
}


def allowed(write: str) -> frozenset:
    """The states in which the conditional write `write` (a key of WRITES) may happen."""
    return WRITES[write]


def finishing(status: ExperimentStatus) -> str:
    """The WRITES key of `finish_experiment` to `status` (an ended status: COMPLETED, FAILED or
    STOPPED; the API's stop goes through `stop_experiment`, which also fails the open round)."""
    return f"finish_experiment.{str(status).lower()}"
