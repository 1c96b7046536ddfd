"""Read models of rounds for clients, developers, analysts and the dashboard.

Besides counts and metrics a round says what went wrong: what sealed it (`sealed_by`), its
aggregation attempts, when the latest one started and the last error, how long it has waited
for its model (`age_seconds`) and whether that is longer than expected (`stuck`), uploads
refused during a pause (`refused_paused`, `refused`). Round 0 is the initial model: it has no
round item, only the federated evaluations of that model.
"""

from __future__ import annotations

from typing import Any

from fma.domain.auth import Principal, Role
from fma.domain.clock import iso
from fma.domain.clock import now as wall_clock
from fma.domain.errors import Forbidden, NotFound
from fma.domain.experiment import Experiment
from fma.domain.records import EvaluationRecord, RefusalRecord, RoundRecord, UpdateRecord
from fma.domain.states import RoundState
from fma.services.deps import Deps, Limits, model_key, model_version_id
from fma.services.experiments import load_experiment

#: a round in one of these states is waiting for its model.
WAITING = (RoundState.SEALED, RoundState.AGGREGATING)


def weighted(evals: list[EvaluationRecord]) -> dict[str, Any]:
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for e in evals:
        for k, v in e.metrics.items():
            sums[k] = sums.get(k, 0.0) + v * e.num_examples
            weights[k] = weights.get(k, 0.0) + e.num_examples
    return {k: sums[k] / weights[k] for k in sorted(sums)}


def _when(ts: float | None) -> str | None:
    return iso(ts) if ts else None


def health(r: RoundRecord, now: float, expected_seconds: float) -> dict[str, Any]:
    """Age and the stuck flag: a round waiting longer than one lease (or after an attempt failed)
    needs someone to look, whatever the experiment's status says."""
    age = round(now - r.sealed_at, 3) if r.state in WAITING and r.sealed_at else None
    stuck = age is not None and (age > expected_seconds or r.last_error is not None)
    return {"age_seconds": age, "expected_seconds": expected_seconds, "stuck": stuck}


def round_public(r: RoundRecord, updates: list[UpdateRecord], evals: list[EvaluationRecord],
                 caller: Principal, refusals: list[RefusalRecord] | None = None, *, now: float | None = None,
                 expected_seconds: float = Limits.lease_seconds) -> dict[str, Any]:
    """The public round; `now` (default: the wall clock) and `expected_seconds` (one lease) date it."""
    now = wall_clock() if now is None else now
    if caller.role == Role.CLIENT:
        updates = [u for u in updates if u.client_id == caller.principal_id]
    refusals = refusals or []
    info = r.info or {}
    return {
        "round": r.round, "state": str(r.state), "accepted": r.accepted, "rejected": r.rejected, "late": r.late,
        "min_updates": r.min_updates, "deadline": _when(r.deadline),
        "opened_at": iso(r.opened_at), "sealed_at": _when(r.sealed_at), "sealed_by": r.sealed_by,
        "published_at": _when(r.published_at),
        "seal_seconds": round(r.sealed_at - r.opened_at, 3) if r.sealed_at else None,
        "aggregation_seconds": r.aggregation_seconds, "metrics": r.metrics or {},
        "evaluation_metrics": weighted(evals), "evaluations": len(evals),
        "model_sha256": r.model_sha256, "manifest_sha256": info.get("manifest_sha256"),
        "privacy": info.get("privacy"), "reason": r.reason,
        "attempts": r.attempts, "aggregation_started_at": _when(r.aggregation_started_at),
        "lease_expires_at": _when(r.lease_expires) if r.state in WAITING else None, "last_error": r.last_error,
        **health(r, now, expected_seconds),
        "plan": info.get("plan"), "cost": info.get("cost"),
        "refused_paused": sum(1 for f in refusals if f.code == "EXPERIMENT_NOT_RUNNING"),
        "refused": [{"client_id": f.client_id, "code": f.code, "reason": f.reason, "count": f.count,
                     "first_at": iso(f.first_at), "last_at": iso(f.last_at)} for f in refusals],
        "updates": [{"client_id": u.client_id, "status": str(u.status), "reason": u.reason,
                     "num_examples": u.num_examples, "metrics": u.metrics or {}, "applied_in": u.applied_in}
                    for u in updates],
        "client_evaluations": [{"client_id": e.client_id, "num_examples": e.num_examples, "metrics": e.metrics}
                               for e in sorted(evals, key=lambda e: e.client_id)
                               if caller.role != Role.CLIENT or e.client_id == caller.principal_id],
        # async mode (docs/async.md): the updates whose buffer published this version
        "buffer": _buffer(info.get("buffer"), caller),
    }


def _buffer(entries: list[dict[str, Any]] | None, caller: Principal) -> list[dict[str, Any]] | None:
    """A published version's buffer (None in sync mode); a client sees only its own entries."""
    if entries is None:
        return None
    return [e for e in entries if caller.role != Role.CLIENT or e.get("client_id") == caller.principal_id]


def _detail(deps: Deps, caller: Principal, r: RoundRecord) -> dict[str, Any]:
    evals = deps.repo.list_evaluations(r.experiment_id, r.round)
    refusals = deps.repo.list_refusals(r.experiment_id, r.round)
    view = {"now": deps.clock(), "expected_seconds": deps.limits.lease_seconds}
    if caller.role == Role.CLIENT:  # a client polls its own update: one item, not the whole round
        own = deps.repo.get_update(r.experiment_id, r.round, caller.principal_id)
        mine = [f for f in refusals if f.client_id == caller.principal_id]
        return round_public(r, [own] if own else [], evals, caller, mine, **view)
    return round_public(r, deps.repo.list_updates(r.experiment_id, r.round), evals, caller, refusals, **view)


def initial_round(deps: Deps, caller: Principal, exp: Experiment) -> dict[str, Any]:
    """Round 0: the initial model as a published round with its federated evaluations."""
    if exp.model_version is None:
        raise NotFound("round 0 (the initial model) is not validated yet", code="ROUND_NOT_FOUND")
    rec = RoundRecord(exp.id, 0, RoundState.PUBLISHED, min_updates="0", model_sha256=exp.initial_sha256)
    evals = deps.repo.list_evaluations(exp.id, 0)
    out = round_public(rec, [], evals, caller, now=deps.clock(), expected_seconds=deps.limits.lease_seconds)
    return out | {"opened_at": exp.created_at, "published_at": None}


def list_rounds(deps: Deps, caller: Principal, experiment_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    load_experiment(deps, caller, experiment_id)
    page = deps.repo.list_rounds(experiment_id, limit, cursor)
    return {"rounds": [_detail(deps, caller, r) for r in page.items], "next_cursor": page.next_cursor}


def get_round(deps: Deps, caller: Principal, experiment_id: str, n: int) -> dict[str, Any]:
    exp = load_experiment(deps, caller, experiment_id)
    if n == 0:
        return initial_round(deps, caller, exp)
    r = deps.repo.get_round(experiment_id, n)
    if r is None:
        raise NotFound(f"round {n} not found", code="ROUND_NOT_FOUND")
    return _detail(deps, caller, r)


def published_model(deps: Deps, caller: Principal, experiment_id: str, n: int) -> dict[str, Any]:
    if caller.role not in (Role.DEVELOPER, Role.ANALYST, Role.ADMIN):
        raise Forbidden("clients fetch the current model through /model", code="FORBIDDEN_ROLE")
    exp = load_experiment(deps, caller, experiment_id)
    if n == 0 and exp.model_version is not None:
        sha = exp.initial_sha256
    else:
        r = deps.repo.get_round(experiment_id, n)
        if r is None or r.state != RoundState.PUBLISHED:
            raise NotFound(f"model of round {n} is not published", code="MODEL_NOT_FOUND")
        sha = r.model_sha256
    key, pinned = model_key(experiment_id, n), model_version_id(exp, n)
    filename = model_filename(exp.name, n)
    head = deps.store.head(key, pinned)
    return {"round": n, "sha256": sha, "size": head[0] if head else None, "filename": filename,
            "url": deps.store.presigned_get(key, deps.limits.presign_seconds, pinned, filename=filename)}


def model_filename(name: str, n: int) -> str:
    """`<experiment-name>-round-<n>.safetensors` with the name cut to safe characters: letters,
    digits, `.`, `_` and `-` (anything else becomes `-`), never empty and never hidden."""
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "-" for c in name)
    safe = "-".join(filter(None, safe.split("-"))).strip("._-")[:100] or "model"
    return f"{safe}-round-{n}.safetensors"
