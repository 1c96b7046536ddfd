"""Aggregate a sealed round: lease it, stream its updates through the strategy, write the model,
its state and manifest, then publish round n and open n+1 in one transaction.

Safe to run twice or concurrently: the lease admits one runner, the publish transaction admits
one winner, and the same inputs give the same bytes (client-id order; DP noise seeded from a
server-side secret, services/dp_noise.py).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from fma.domain.aggregation import UpdateInput, aggregate
from fma.domain.aggregation.weight_limits import clip_weights
from fma.domain.codec import decode, encode
from fma.domain.errors import UpdateRejected
from fma.domain.experiment import Experiment, new_round
from fma.domain.records import UpdateRecord
from fma.domain.states import RoundState, UpdateStatus
from fma.services import history
from fma.services.deps import Deps, manifest_key, model_key, state_key, update_key
from fma.services.dp_noise import noise_seed

#: what the round item keeps of the strategy's info (the item must stay far below 400 KB).
ROUND_INFO_KEYS = ("privacy", "timings", "bytes_read", "requests", "selected")
#: the round info key recording whether the round saved optimizer state under state/.
STATE_SAVED = "state_saved"


def aggregate_round(deps: Deps, experiment_id: str, n: int, owner: str | None = None) -> dict[str, Any]:
    exp = deps.repo.get_experiment(experiment_id)
    rnd = deps.repo.get_round(experiment_id, n)
    if exp is None or rnd is None:
        return {"status": "ignored", "reason": "unknown experiment or round"}
    if rnd.state == RoundState.PUBLISHED:
        _mark_applied(deps, experiment_id, n)
        return {"status": "already_published", "sha256": rnd.model_sha256}
    owner = owner or uuid.uuid4().hex
    started = deps.clock()
    lease = deps.repo.acquire_lease(experiment_id, n, owner, started, deps.limits.lease_seconds)
    if lease is None:
        return {"status": "busy"}
    try:
        return _run(deps, exp, n, owner, started) | {"round_seconds": round(deps.clock() - rnd.opened_at, 3)}
    except Exception as exc:  # kept on the round for the dashboard, then raised for the retry
        deps.repo.record_aggregation_error(experiment_id, n, attempt_error(lease.attempts, exc), owner)
        raise


def _run(deps: Deps, exp: Experiment, n: int, owner: str, started: float) -> dict[str, Any]:
    model_bytes, info, metrics = build_model(deps, exp, n)
    sha = hashlib.sha256(model_bytes).hexdigest()
    seconds = round(deps.clock() - started, 6)
    next_round = new_round(exp, n + 1, deps.clock()) if n < exp.policy.total_rounds else None
    published = deps.repo.publish_round(exp.id, n, owner, sha256=sha, metrics=metrics, info=info,
                                        seconds=seconds, now=deps.clock(), next_round=next_round)
    if published:
        _mark_applied(deps, exp.id, n)
    return {"status": "published" if published else "lost_lease", "sha256": sha, "seconds": seconds,
            "bytes": len(model_bytes)}


def attempt_error(attempt: int, exc: BaseException) -> str:
    """`attempt N: Type: message`, one line and bounded: what an operator reads first."""
    text = " ".join(str(exc).split())[:500]
    return f"attempt {attempt}: {type(exc).__name__}" + (f": {text}" if text else "")


def build_model(deps: Deps, exp: Experiment, n: int) -> tuple[bytes, dict[str, Any], dict[str, float]]:
    """Run the strategy and write model, state and manifest (same inputs -> same model bytes)."""
    t0 = time.perf_counter()
    global_bytes = deps.store.get(model_key(exp.id, n - 1))
    global_model, _ = decode(global_bytes)
    prev_state = load_state(deps, exp.id, n - 1)
    accepted = [u for u in deps.repo.list_updates(exp.id, n)
                if u.status in (UpdateStatus.ACCEPTED, UpdateStatus.APPLIED)]
    counted = clip_weights([int(u.num_examples or 0) for u in accepted], exp.update_limits.max_weight_share)
    inputs = [_input(deps, u, c) for u, c in zip(accepted, counted, strict=True)]
    t1 = time.perf_counter()
    seed, noise = (noise_seed(getattr(deps, "secrets", None), exp.id, n)
                   if (exp.strategy_params or {}).get("dp") else (None, None))
    result = aggregate(exp.strategy_name, exp.strategy_params, global_model, inputs, prev_state,
                       round_number=n, seed=engine_seed(exp.id, n), noise_seed=seed)
    if noise is not None:  # which key and label seeded the noise: never the key itself
        result.info["privacy"]["noise"] = noise
    t2 = time.perf_counter()
    model_bytes = encode(result.model, model_metadata(exp.id, n, exp.strategy_name))
    deps.store.put(model_key(exp.id, n), model_bytes)
    state_object = None
    if result.state:
        state_bytes = encode(result.state)
        deps.store.put(state_key(exp.id, n), state_bytes)
        state_object = {"key": state_key(exp.id, n), "sha256": hashlib.sha256(state_bytes).hexdigest()}
    info = _json_safe(result.info)
    total = sum(u.num_examples or 0 for u in accepted)
    manifest = {
        "experiment_id": exp.id, "round": n, "strategy": {"name": exp.strategy_name, "params": exp.strategy_params},
        "global_model": {"key": model_key(exp.id, n - 1), "sha256": hashlib.sha256(global_bytes).hexdigest()},
        "inputs": _with_clipping(info.get("inputs") or [
            {"client_id": u.client_id, "sha256": u.sha256, "num_examples": u.num_examples,
             "weight": (u.num_examples or 0) / total if total else 0.0} for u in accepted], accepted, counted),
        "update_limits": exp.update_limits.to_json(),
        "input_objects": [{"client_id": u.client_id, "key": update_key(exp.id, n, u.client_id),
                           "version_id": u.version_id, "size": u.size} for u in accepted],
        "output": {"key": model_key(exp.id, n), "sha256": hashlib.sha256(model_bytes).hexdigest(),
                   "size": len(model_bytes)},
        "state": state_object, "metrics": result.metrics, "info": info,
        "timings": {"load_seconds": t1 - t0, "aggregate_seconds": t2 - t1,
                    "write_seconds": time.perf_counter() - t2},
        **history.chain_fields(deps, exp.to_public(), n, global_bytes),
    }
    written = history.write_manifest(deps, manifest_key(exp.id, n),
                                     json.dumps(manifest, indent=1, sort_keys=True).encode())
    round_info = {k: info[k] for k in ROUND_INFO_KEYS if k in info}  # lists of clients stay in the manifest
    round_info[STATE_SAVED] = state_object is not None  # the next round reads state only when this says so
    round_info["manifest_sha256"] = hashlib.sha256(written).hexdigest()
    return model_bytes, round_info, dict(result.metrics)


def model_metadata(experiment_id: str, n: int, strategy: str) -> dict[str, str]:
    return {"fma.round": str(n), "fma.experiment": experiment_id, "fma.strategy": strategy}


def _with_clipping(entries: list[dict[str, Any]], accepted: list[UpdateRecord],
                   counted: list[float]) -> list[dict[str, Any]]:
    """Per client in the manifest: the declared num_examples and what was counted after
    max_weight_share clipping (the strategy's `weight` already reflects the clipped count)."""
    facts = {u.client_id: (int(u.num_examples or 0), n) for u, n in zip(accepted, counted, strict=True)}
    for entry in entries:
        declared, used = facts.get(entry.get("client_id"), (entry.get("num_examples"), entry.get("num_examples")))
        entry.update(num_examples=declared, counted_examples=used, weight_clipped=used != declared)
    return entries


def _input(deps: Deps, u: UpdateRecord, counted_examples: float) -> UpdateInput:
    key = update_key(u.experiment_id, u.round, u.client_id)

    def fetch() -> bytes:
        data = deps.store.get(key, u.version_id)
        if u.sha256 and hashlib.sha256(data).hexdigest() != u.sha256:
            raise UpdateRejected("CHANGED_AFTER_ACCEPT", f"update of {u.client_id} changed after it was accepted")
        return data

    def fetch_range(start: int, end: int) -> bytes:
        return deps.store.get_range(key, start, end, u.version_id)

    # Strategies weigh by num_examples: they see the count after max_weight_share clipping.
    return UpdateInput(client_id=u.client_id, num_examples=counted_examples, sha256=u.sha256 or "",
                       size=int(u.size or 0), fetch=fetch, fetch_range=fetch_range, metrics=u.metrics or {})


def load_state(deps: Deps, experiment_id: str, n: int) -> dict[str, Any]:
    """The optimizer state round `n` saved, read only when its round item records one.

    No HEAD probes the key: under a prefix-scoped grant S3 answers a missing key with 403, which
    would fail every stateless experiment at round 2. A round published before the fact was
    recorded (no `state_saved` in its info) is asked by a LIST, which answers absence plainly.
    """
    if n < 1:
        return {}
    rnd = deps.repo.get_round(experiment_id, n)
    recorded = (rnd.info or {}).get(STATE_SAVED) if rnd is not None else None
    key = state_key(experiment_id, n)
    if recorded is False or (recorded is None and not deps.store.exists(key)):
        return {}
    tensors, _ = decode(deps.store.get(key))
    return {k: v.copy() for k, v in tensors.items()}


def _mark_applied(deps: Deps, experiment_id: str, n: int) -> None:
    for u in deps.repo.list_updates(experiment_id, n):
        if u.status == UpdateStatus.ACCEPTED:
            deps.repo.mark_applied(experiment_id, n, u.client_id, deps.clock())


def engine_seed(experiment_id: str, n: int) -> int:
    """The engine's public seed (for custom strategies' own randomness); never DP noise."""
    return int.from_bytes(hashlib.sha256(f"{experiment_id}:{n}".encode()).digest()[:8], "little")


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so numpy scalars and tuples become plain types DynamoDB accepts."""
    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(value, default=default), parse_float=lambda s: float(s))
