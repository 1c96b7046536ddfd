"""The minute-by-minute sweep: deadlines, lost invocations, expired leases, retries, and
uploads whose S3 event never arrived.

Every action is a conditional write, so overlapping sweeps or a sweep racing ingest change
nothing twice. Each item is swept on its own: one that raises has its next check pushed back
(jittered backoff) and is FAILED after a bounded number of attempts, so it never stalls the
items of any other experiment behind it in the due index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fma.domain.clock import iso
from fma.domain.records import RoundRecord
from fma.domain.states import ExperimentStatus, RoundState
from fma.services.deps import Deps, update_key
from fma.services.failures import describe, round_sweep_failed, upload_failed

log = logging.getLogger(__name__)

#: an UPLOADING record whose object never appeared is abandoned after this long.
ABANDON_SECONDS = 86400.0


@dataclass
class SweepReport:
    sealed: list[str] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    reinvoked: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)
    # items that raised: "<tag>: <error>" (pushed back for a later sweep, or FAILED at the bound)
    errors: list[str] = field(default_factory=list)
    failed_updates: list[str] = field(default_factory=list)


def sweep(deps: Deps, limit: int = 100) -> SweepReport:
    report = SweepReport()
    now = deps.clock()
    for rnd in deps.repo.list_due(now, limit):
        tag = f"{rnd.experiment_id}/{rnd.round}"
        try:
            if rnd.state == RoundState.OPEN:
                _deadline(deps, rnd, now, report, tag)
            elif rnd.state in (RoundState.SEALED, RoundState.AGGREGATING):
                _stale(deps, rnd, now, report, tag)
        except Exception as exc:  # isolate it: the rest of the pass goes on
            _isolate(report, tag, exc, lambda rnd=rnd, exc=exc: round_sweep_failed(deps, rnd, exc, now),
                     report.failed)
    _reconcile(deps, now, limit, report)
    return report


def _isolate(report: SweepReport, tag: str, exc: Exception, push_back, gave_up: list[str]) -> None:
    """Record a failed item and push it back; a failure to push back is logged, never raised."""
    log.warning("sweep of %s failed: %s", tag, describe(exc))
    report.errors.append(f"{tag}: {describe(exc)}")
    try:
        if push_back().give_up:
            gave_up.append(tag)
    except Exception:
        log.exception("could not push back %s", tag)


def _deadline(deps: Deps, rnd: RoundRecord, now: float, report: SweepReport, tag: str) -> None:
    exp = deps.repo.get_experiment(rnd.experiment_id)
    if exp is None or rnd.deadline is None or rnd.deadline > now:
        return
    if exp.status != ExperimentStatus.RUNNING:  # a paused experiment seals nothing: check again later
        deps.repo.extend_deadline(exp.id, rnd.round, now + (exp.policy.deadline_seconds or 60))
        return
    if exp.policy.is_async:  # max_wait_seconds ran out: a partial buffer of min_buffer (issue 15)
        from fma.services.buffered_ingest import sweep_wait

        outcome = sweep_wait(deps, exp, rnd.round, rnd.accepted, now)
        if outcome is not None:
            (report.sealed if outcome == "sealed" else report.extended).append(tag)
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
    if rnd.state == RoundState.AGGREGATING and not (rnd.last_error or "").startswith(f"attempt {rnd.attempts}:"):
        deps.repo.record_aggregation_error(rnd.experiment_id, rnd.round, lease_expired(rnd))
    if deps.repo.push_due(rnd.experiment_id, rnd.round, now + deps.limits.lease_seconds, rnd.state):
        report.reinvoked.append(tag)
        _invoke(deps, rnd.experiment_id, rnd.round)


def lease_expired(rnd: RoundRecord) -> str:
    """The last error of an attempt that neither published nor raised (killed, timed out)."""
    until = iso(rnd.lease_expires) if rnd.lease_expires else "its expiry"
    return f"attempt {rnd.attempts}: LEASE_EXPIRED: held the lease until {until} without publishing"


def _reconcile(deps: Deps, now: float, limit: int, report: SweepReport) -> None:
    """Ingest uploads whose S3 event was lost (or deferred while the experiment was paused)."""
    from fma.services.ingest import ingest_update

    for upd in deps.repo.list_due_uploads(now, limit):
        tag = f"{upd.experiment_id}/{upd.round}/{upd.client_id}"
        key = update_key(upd.experiment_id, upd.round, upd.client_id)
        try:
            if not deps.store.exists(key):  # a LIST: S3 may answer a HEAD of a missing key with 403
                abandoned = now - upd.updated_at > ABANDON_SECONDS
                if abandoned and upd.upload_id:  # its parts cost storage until aborted (S3's lifecycle rule backs this)
                    deps.store.multipart_abort(key, upd.upload_id)
                deps.repo.push_upload_due(upd.experiment_id, upd.round, upd.client_id,
                                          None if abandoned else now + deps.limits.reconcile_grace_seconds)
                continue
            outcome = ingest_update(deps, upd.experiment_id, upd.round, upd.client_id, key)
        except Exception as exc:  # isolate it: the uploads behind it are still reconciled
            _isolate(report, tag, exc, lambda upd=upd, exc=exc: upload_failed(deps, upd, exc, now),
                     report.failed_updates)
            continue
        report.reconciled.append(f"{tag}:{outcome.status}")


def _invoke(deps: Deps, experiment_id: str, n: int) -> None:
    if deps.invoker is not None:
        deps.invoker.invoke_async({"experiment_id": experiment_id, "round": n})
