"""Ingest in async mode (issue 15, docs/async.md): accept an update into the open buffer, refuse
it STALE beyond `max_staleness`, and seal the buffer (exactly one caller) once it is full.

Rounds are versions: round v OPEN is the buffer that builds version v on version v - 1, and
`current_round` names it. An update posted to round n was trained on version n - 1; it joins
whichever buffer is open when its acceptance transaction commits (`accept_buffered` requires
that round OPEN and records `applied_in` = v on the update with it), so it joins exactly one.
Sealing buffer v opens buffer v + 1 in the same transaction, so an update arriving while v
aggregates is never LATE: it joins v + 1 (only after the last version has sealed is it LATE).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fma.domain.experiment import Experiment, new_round
from fma.domain.records import UpdateRecord
from fma.domain.states import ENDED, ExperimentStatus, RoundState
from fma.services.deps import Deps

if TYPE_CHECKING:
    from fma.services.ingest import IngestOutcome

log = logging.getLogger(__name__)
#: buffers that may fill between reading the open one and accepting into it, before giving up
#: (the event is then retried): an attempt loses only to a full buffer, which it seals, or to
#: a seal, which opened the next buffer.
ACCEPT_ATTEMPTS = 16


def stale_reason(base: int, builds_on: int, max_staleness: int) -> str:
    return (f"STALE: trained on version {base}, {builds_on - base} versions behind version {builds_on} "
            f"(max_staleness={max_staleness})")


def accept_async(deps: Deps, exp: Experiment, record: UpdateRecord) -> IngestOutcome:
    """Accept a validated update into the open buffer, or reject it STALE, defer or mark it LATE."""
    from fma.services.ingest import IngestOutcome

    ids = (exp.id, record.round, record.client_id)
    policy = exp.policy
    for _ in range(ACCEPT_ATTEMPTS):
        current = deps.repo.get_experiment(exp.id) or exp
        version = current.current_round
        base, builds_on = record.round - 1, version - 1
        if builds_on - base > policy.max_staleness:
            record.reason = stale_reason(base, builds_on, policy.max_staleness)
            deps.repo.reject_update(record)
            return IngestOutcome("rejected", *ids, reason=record.reason)
        result = deps.repo.accept_buffered(record, version, int(policy.buffer_size or 1))
        if result in ("accepted", "duplicate"):
            return IngestOutcome(result, *ids, sealed=try_seal_buffer(deps, current, version))
        if result == "full":  # its filler has not sealed it yet (or crashed before): seal, then go on
            try_seal_buffer(deps, current, version)
            continue
        if result == "inactive":
            deps.repo.push_upload_due(exp.id, record.round, record.client_id,
                                      deps.clock() + deps.limits.reconcile_grace_seconds)
            return IngestOutcome("deferred", *ids, reason="experiment is not running")
        rnd = deps.repo.get_round(exp.id, version)
        last_sealed = version >= policy.total_rounds and (rnd is None or rnd.state != RoundState.OPEN)
        if last_sealed or rnd is None or rnd.state == RoundState.FAILED or current.status in ENDED:
            deps.repo.mark_late(record)  # no version will take it: the last buffer sealed, or a stop
            return IngestOutcome("late", *ids)
    raise RuntimeError(f"buffers of {exp.id} sealed during {ACCEPT_ATTEMPTS} attempts to accept an update")


def try_seal_buffer(deps: Deps, exp: Experiment, version: int, quota: int | None = None) -> bool:
    """Seal buffer `version` once it holds `quota` updates (`buffer_size` by default) and open
    the next buffer in the same transaction; only the caller that wins invokes aggregation."""
    rnd = deps.repo.get_round(exp.id, version)
    if rnd is None or rnd.state != RoundState.OPEN:
        return False
    current = deps.repo.get_experiment(exp.id) or exp
    if current.status != ExperimentStatus.RUNNING:
        return False
    need = quota if quota is not None else int(current.policy.buffer_size or 1)
    if rnd.accepted < need:
        return False
    now = deps.clock()
    following = new_round(current, version + 1, now) if version < current.policy.total_rounds else None
    if not deps.repo.seal_buffer(exp.id, version, need, now, deps.limits.lease_seconds, following):
        return False
    if deps.invoker is not None:
        deps.invoker.invoke_async({"experiment_id": exp.id, "round": version})
    return True


def sweep_wait(deps: Deps, exp: Experiment, version: int, accepted: int, now: float) -> str | None:
    """`max_wait_seconds` ran out for buffer `version`: publish it partial when it holds
    `min_buffer` updates ("sealed"), else wait another period ("extended")."""
    policy = exp.policy
    if accepted >= policy.min_buffer and try_seal_buffer(deps, exp, version, quota=policy.min_buffer):
        return "sealed"
    if deps.repo.extend_deadline(exp.id, version, now + float(policy.max_wait_seconds or 60)):
        return "extended"
    return None
