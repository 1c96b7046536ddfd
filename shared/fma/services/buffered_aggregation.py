"""Publish one version from a sealed buffer (async mode, issue 15, docs/async.md).

The same discipline as sync rounds (services/aggregation.py): a lease admits one runner, the
publish transaction admits one winner, and the same buffer gives the same bytes. Versions
publish in order: buffer v aggregates on version v - 1, so a buffer that sealed while v - 1
was still aggregating waits ("waiting") and is invoked again when v - 1 publishes (or by the
sweeper, which re-invokes sealed rounds).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from fma.domain.aggregation import BufferedUpdate, UpdateInput, aggregate_buffer
from fma.domain.aggregation.weight_limits import clip_weights
from fma.domain.codec import decode
from fma.domain.experiment import Experiment
from fma.domain.records import UpdateRecord
from fma.domain.states import ENDED, RoundState, UpdateStatus
from fma.services import history
from fma.services.aggregation import (
    ROUND_INFO_KEYS,
    STATE_SAVED,
    Stored,
    _input,
    _json_safe,
    engine_seed,
    global_model_entry,
    load_state,
    model_entry,
    write_outputs,
)
from fma.services.deps import Deps, manifest_key, model_key, model_version_id, update_key
from fma.services.unpublished import Written, discard

#: per buffer entry, what the round item keeps (GET /rounds/{n} lists a version's buffer).
BUFFER_FIELDS = ("client_id", "round", "base_version", "staleness", "staleness_weight", "num_examples",
                 "counted_examples", "weight", "effective_weight")


def aggregate_version(deps: Deps, exp: Experiment, n: int, owner: str | None = None) -> dict[str, Any]:
    """Publish version n from buffer n (idempotent: safe to run twice or concurrently)."""
    rnd = deps.repo.get_round(exp.id, n)
    if rnd is None or rnd.state in (RoundState.OPEN, RoundState.FAILED):
        return {"status": "ignored", "reason": "no sealed buffer"}
    if rnd.state == RoundState.PUBLISHED:
        mark_buffer_applied(deps, exp.id, n)
        return {"status": "already_published", "sha256": rnd.model_sha256}
    if exp.status in ENDED:  # stopped while this buffer waited: it never publishes
        deps.repo.fail_round(exp.id, n, f"EXPERIMENT_{exp.status}: the experiment ended before this version")
        return {"status": "ended"}
    if (exp.model_version or 0) != n - 1:
        return {"status": "waiting", "for_version": n - 1}
    owner = owner or uuid.uuid4().hex
    started = deps.clock()
    if deps.repo.acquire_lease(exp.id, n, owner, started, deps.limits.lease_seconds) is None:
        return {"status": "busy"}
    written = Written()
    model, info, metrics = build_version(deps, exp, n, written)
    sha = model.sha256
    seconds = round(deps.clock() - started, 6)
    published = deps.repo.publish_version(exp.id, n, owner, sha256=sha, metrics=metrics, info=info,
                                          seconds=seconds, now=deps.clock(),
                                          complete=n >= exp.policy.total_rounds)
    if published:
        mark_buffer_applied(deps, exp.id, n)
        _invoke_if_sealed(deps, exp.id, n + 1)
    cleaned = {} if published else {"discarded": discard(deps, exp.id, n, written)}  # (services/unpublished.py)
    return {"status": "published" if published else "lost_lease", "sha256": sha, "seconds": seconds,
            "bytes": model.size, "round_seconds": round(deps.clock() - rnd.opened_at, 3), **cleaned}


def build_version(deps: Deps, exp: Experiment, n: int, written: Written | None = None,
                  ) -> tuple[Stored, dict[str, Any], dict[str, float]]:
    """Run FedBuff over buffer n and write model, state and manifest (same buffer -> same bytes),
    noting in `written` the versions this attempt wrote."""
    t0 = time.perf_counter()
    current_bytes = deps.store.get(model_key(exp.id, n - 1), model_version_id(exp, n - 1))
    current, _ = decode(current_bytes)
    entries = [u for u in deps.repo.list_buffer(exp.id, n)
               if u.status in (UpdateStatus.ACCEPTED, UpdateStatus.APPLIED)]
    counted = clip_weights([int(u.num_examples or 0) for u in entries], exp.update_limits.max_weight_share)
    buffer = [BufferedUpdate(_input(deps, u, c), u.round - 1) for u, c in zip(entries, counted, strict=True)]
    bases = {v: base_model_input(deps, exp, v) for v in sorted({b.base_version for b in buffer})}
    t1 = time.perf_counter()
    policy = exp.policy
    result = aggregate_buffer(exp.strategy_name, exp.strategy_params, current, buffer, bases,
                              load_state(deps, exp.id, n - 1), current_version=n - 1,
                              staleness=policy.staleness_fn(), server_learning_rate=policy.server_learning_rate,
                              seed=engine_seed(exp.id, n))
    t2 = time.perf_counter()
    model, state_object, _ = write_outputs(deps, exp, n, result.model, result.state, written)
    info = _json_safe(result.info)
    inputs = _with_counts(info.pop("inputs"), entries, counted)
    manifest = {
        "experiment_id": exp.id, "round": n, "version": n, "mode": "async", "rounds": policy.to_json(),
        "strategy": {"name": exp.strategy_name, "params": exp.strategy_params},
        "global_model": global_model_entry(exp, n - 1, current_bytes),
        "base_models": [{"version": v, **model_entry(exp, v, b.sha256)} for v, b in bases.items()],
        "inputs": inputs, "update_limits": exp.update_limits.to_json(),
        "input_objects": [{"client_id": u.client_id, "round": u.round, "key": update_key(exp.id, u.round, u.client_id),
                           "version_id": u.version_id, "size": u.size} for u in entries],
        "output": {"key": model_key(exp.id, n), "sha256": model.sha256, "size": model.size},
        "state": state_object, "metrics": result.metrics, "info": info,
        "timings": {"load_seconds": t1 - t0, "aggregate_seconds": t2 - t1, "write_seconds": time.perf_counter() - t2},
        **history.chain_fields(deps, exp.to_public(), n, current_bytes),
    }
    stored = history.write_manifest(deps, manifest_key(exp.id, n),
                                    json.dumps(manifest, indent=1, sort_keys=True).encode(), written)
    round_info = {k: info[k] for k in ROUND_INFO_KEYS if k in info}
    round_info[STATE_SAVED] = state_object is not None
    round_info["manifest_sha256"] = hashlib.sha256(stored).hexdigest()
    round_info["buffer"] = [{k: entry.get(k) for k in BUFFER_FIELDS} for entry in inputs]
    return model, round_info, dict(result.metrics)


def base_model_input(deps: Deps, exp: Experiment, version: int) -> UpdateInput:
    """A published model read like an update, by byte ranges (memory follows the engine's
    slices, not the number of base versions); published objects never change."""
    key, pinned = model_key(exp.id, version), model_version_id(exp, version)
    rnd = deps.repo.get_round(exp.id, version) if version else None
    sha = (rnd.model_sha256 if rnd is not None else exp.initial_sha256) or ""
    head = deps.store.head(key, pinned)
    return UpdateInput(client_id=f"v{version}", num_examples=1, sha256=sha, size=int(head[0]) if head else 0,
                       fetch=lambda: deps.store.get(key, pinned),
                       fetch_range=lambda a, b: deps.store.get_range(key, a, b, pinned))


def _with_counts(inputs: list[dict[str, Any]], entries: list[UpdateRecord], counted: list[float]
                 ) -> list[dict[str, Any]]:
    """Declared num_examples and the count after max_weight_share clipping, per entry."""
    facts = {(u.round, u.client_id): (int(u.num_examples or 0), c) for u, c in zip(entries, counted, strict=True)}
    for entry in inputs:
        declared, used = facts[(entry["round"], entry["client_id"])]
        entry.update(num_examples=declared, counted_examples=used, weight_clipped=used != declared)
    return inputs


def mark_buffer_applied(deps: Deps, experiment_id: str, n: int) -> None:
    for u in deps.repo.list_buffer(experiment_id, n):
        if u.status == UpdateStatus.ACCEPTED:
            deps.repo.mark_applied(experiment_id, u.round, u.client_id, deps.clock())


def _invoke_if_sealed(deps: Deps, experiment_id: str, n: int) -> None:
    """Buffer n sealed while n - 1 aggregated: it can run now."""
    nxt = deps.repo.get_round(experiment_id, n)
    if nxt is not None and nxt.state == RoundState.SEALED and deps.invoker is not None:
        deps.invoker.invoke_async({"experiment_id": experiment_id, "round": n})
