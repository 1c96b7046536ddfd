"""The minute-by-minute sweep: deadlines, lost invocations, expired leases, retries, and
uploads whose S3 event never arrived.

Every action is a conditional write, so overlapping sweeps or a sweep racing ingest change
nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fma.domain.records import RoundRecord
from fma.domain.states import ExperimentStatus, RoundState
from fma.services.deps import Deps, update_key

#: an UPLOADING record whose object never appeared is abandoned after this long.
ABANDON_SECONDS = 86400.0


@dataclass
class SweepReport:
    sealed: list[str] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    reinvoked: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)


def sweep(deps: Deps, limit: int = 100) -> SweepReport:
    report = SweepReport()
    now = deps.clock()
    for rnd in deps.repo.list_due(now, limit):
        tag = f"{rnd.experiment_id}/{rnd.round}"
        if rnd.state == RoundState.OPEN:
            _deadline(deps, rnd, now, report, tag)
        elif rnd.state in (RoundState.SEALED, RoundState.AGGREGATING):
            _stale(deps, rnd, now, report, tag)
    _reconcile(deps, now, limit, report)
    return report


def _deadline(deps: Deps, rnd: RoundRecord, now: float, report: SweepReport, tag: str) -> None:
    exp = deps.repo.get_experiment(rnd.experiment_id)
    if exp is None or rnd.deadline is None or rnd.deadline > now:
        return
    if exp.status != ExperimentStatus.RUNNING:  # a paused experiment seals nothing: check again later
        deps.repo.extend_deadline(exp.id, rnd.round, now + (exp.policy.deadline_seconds or 60))
        return
    policy = exp.policy
    # At the deadline: aggregate what arrived if it is enough; otherwise fail the round when the
    # policy says `fail`, else extend the deadline by another period (`extend`, `aggregate`).
    if rnd.accepted >= policy.min_updates_at_deadline:
        if deps.repo.force_seal(exp.id, rnd.round, now, deps.limits.lease_seconds):
            report.sealed.append(tag)
            _invoke(deps, exp.id, rnd.round)
    elif policy.on_deadline == "fail":
        if deps.repo.fail_round(exp.id, rnd.round, f"DEADLINE: {rnd.accepted} of "
                                f"{policy.min_updates_at_deadline} needed updates by the deadline"):
            report.failed.append(tag)
    elif deps.repo.extend_deadline(exp.id, rnd.round, now + (policy.deadline_seconds or 60)):
        report.extended.append(tag)


def _stale(deps: Deps, rnd: RoundRecord, now: float, report: SweepReport, tag: str) -> None:
    """A sealed round nobody aggregated, or an expired lease: re-invoke, or fail after the retries."""
    if rnd.attempts >= deps.limits.max_aggregation_attempts:
        if deps.repo.fail_round(rnd.experiment_id, rnd.round,
                                f"AGGREGATION_FAILED: {rnd.attempts} attempts did not publish"):
            report.failed.append(tag)
        return
    if deps.repo.push_due(rnd.experiment_id, rnd.round, now + deps.limits.lease_seconds, rnd.state):
        report.reinvoked.append(tag)
        _invoke(deps, rnd.experiment_id, rnd.round)


def _reconcile(deps: Deps, now: float, limit: int, report: SweepReport) -> None:
    """Ingest uploads whose S3 event was lost (or deferred while the experiment was paused)."""
    from fma.services.ingest import ingest_update

    for upd in deps.repo.list_due_uploads(now, limit):
        key = update_key(upd.experiment_id, upd.round, upd.client_id)
        if not deps.store.exists(key):
            abandoned = now - upd.updated_at > ABANDON_SECONDS
            deps.repo.push_upload_due(upd.experiment_id, upd.round, upd.client_id,
                                      None if abandoned else now + deps.limits.reconcile_grace_seconds)
            continue
        outcome = ingest_update(deps, upd.experiment_id, upd.round, upd.client_id, key)
        report.reconciled.append(f"{upd.experiment_id}/{upd.round}/{upd.client_id}:{outcome.status}")


def _invoke(deps: Deps, experiment_id: str, n: int) -> None:
    if deps.invoker is not None:
        deps.invoker.invoke_async({"experiment_id": experiment_id, "round": n})
