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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from fma.domain.aggregation import AggregationResult, EngineOptions, Partitioning, UpdateInput
from fma.domain.aggregation.fanout import RoundInputs
from fma.domain.aggregation.ranged_model import READ_BYTES, open_model
from fma.domain.aggregation.weight_limits import clip_weights
from fma.domain.codec import decode, encode_stream
from fma.domain.cost import Usage, round_cost
from fma.domain.errors import UpdateRejected
from fma.domain.experiment import Experiment, new_round
from fma.domain.ranged import RangedObject
from fma.domain.records import UpdateRecord
from fma.domain.states import RoundState, UpdateStatus
from fma.services import costing, history
from fma.services.deps import Deps, manifest_key, model_key, model_version_id, state_key, update_key
from fma.services.dp_noise import noise_seed
from fma.services.ranged_reads import open_ranged
from fma.services.unpublished import Written, discard

#: what the round item keeps of the strategy's info (the item must stay far below 400 KB).
ROUND_INFO_KEYS = ("privacy", "timings", "bytes_read", "requests", "selected", "plan", "cost")
#: about the size of a manifest (the cost counts its PUT before it is written).
MANIFEST_BYTES = 4096
#: the round info key recording whether the round saved optimizer state under state/.
STATE_SAVED = "state_saved"


class Stored(NamedTuple):
    """What a streamed write stored: the sha256 and size of its bytes, computed while streaming."""

    sha256: str
    size: int


def aggregate_round(deps: Deps, experiment_id: str, n: int, owner: str | None = None) -> dict[str, Any]:
    exp = deps.repo.get_experiment(experiment_id)
    rnd = deps.repo.get_round(experiment_id, n)
    if exp is None or rnd is None:
        return {"status": "ignored", "reason": "unknown experiment or round"}
    if exp.policy.is_async:  # issue 15: a version from a sealed buffer (services/buffered_aggregation.py)
        from fma.services.buffered_aggregation import aggregate_version

        return aggregate_version(deps, exp, n, owner)
    if rnd.state == RoundState.PUBLISHED:
        mark_applied(deps, experiment_id, n)
        return {"status": "already_published", "sha256": rnd.model_sha256}
    owner = owner or uuid.uuid4().hex
    started = deps.clock()
    lease = deps.repo.acquire_lease(experiment_id, n, owner, started, deps.limits.lease_seconds)
    if lease is None:
        return {"status": "busy"}
    written = Written()
    try:
        model, info, metrics = build_model(deps, exp, n, written=written)
        return publish(deps, exp, rnd, owner, started, model, info, metrics, written)
    except Exception as exc:  # kept on the round for the dashboard, then raised for the retry
        deps.repo.record_aggregation_error(experiment_id, n, attempt_error(lease.attempts, exc), owner)
        raise


def publish(deps: Deps, exp: Experiment, rnd: Any, owner: str, started: float, model: Stored,
            info: dict[str, Any], metrics: dict[str, float], written: Written | None = None) -> dict[str, Any]:
    """Round n PUBLISHED and n+1 OPEN in one transaction under the lease, then APPLIED marks; a
    refused publish removes what `written` says this attempt wrote (services/unpublished.py).
    `model` is what `write_outputs` streamed (its sha256 is the one the round records)."""
    experiment_id, n = exp.id, rnd.round
    sha = model.sha256
    seconds = round(deps.clock() - started, 6)
    next_round = new_round(exp, n + 1, deps.clock()) if n < exp.policy.total_rounds else None
    published = deps.repo.publish_round(experiment_id, n, owner, sha256=sha, metrics=metrics, info=info,
                                        seconds=seconds, now=deps.clock(), next_round=next_round)
    if published:
        mark_applied(deps, experiment_id, n)
    cleaned = {} if published or written is None else {"discarded": discard(deps, experiment_id, n, written)}
    return {"status": "published" if published else "lost_lease", "sha256": sha, "seconds": seconds,
            "bytes": model.size, "round_seconds": round(deps.clock() - rnd.opened_at, 3), **cleaned}


def attempt_error(attempt: int, exc: BaseException) -> str:
    """`attempt N: Type: message`, one line and bounded: what an operator reads first."""
    text = " ".join(str(exc).split())[:500]
    return f"attempt {attempt}: {type(exc).__name__}" + (f": {text}" if text else "")


def accepted_updates(deps: Deps, experiment_id: str, n: int) -> list[UpdateRecord]:
    """The round's accepted updates in client-id order: what it aggregates."""
    return [u for u in deps.repo.list_updates(experiment_id, n, accepted_only=True)
            if u.status in (UpdateStatus.ACCEPTED, UpdateStatus.APPLIED)]


def partitioning_of(exp: Experiment) -> Partitioning:
    """The arithmetic's shape from the experiment's `aggregation` (the same for every plan)."""
    return Partitioning(partition_updates=exp.aggregation.partition_updates, shard_bytes=exp.aggregation.shard_bytes)


def round_inputs(deps: Deps, exp: Experiment, n: int, accepted: Sequence[UpdateRecord], *,
                 noise: bool = True, ranged: bool = False,
                 ) -> tuple[RoundInputs, Stored, list[float], dict[str, Any] | None]:
    """What `aggregate` takes for round n (and the global model's sha256 and size, the counted
    examples, the noise record). `noise=False` (a fanout child) derives no DP seed: children
    never hold the key. `ranged` (the fanout tasks) opens the global model and the state by
    their headers and reads them by byte range where they are used (ranged_model.py), never
    whole; its sha256 is then "" (`hash_stored` hashes it in a streamed pass where it is recorded)."""
    key, version = model_key(exp.id, n - 1), model_version_id(exp, n - 1)
    if ranged:
        global_model, global_ref = open_stored(deps, key, version)
    else:
        global_bytes = deps.store.get(key, version)
        global_model = decode(global_bytes)[0]
        global_ref = Stored(hashlib.sha256(global_bytes).hexdigest(), len(global_bytes))
    counted = clip_weights([int(u.num_examples or 0) for u in accepted], exp.update_limits.max_weight_share)
    inputs = [_input(deps, u, c) for u, c in zip(accepted, counted, strict=True)]
    seed, record = (noise_seed(getattr(deps, "secrets", None), exp.id, n)
                    if noise and (exp.strategy_params or {}).get("dp") else (None, None))
    ri = RoundInputs(exp.strategy_name, exp.strategy_params, global_model, inputs,
                     load_state(deps, exp.id, n - 1, ranged=ranged), round_number=n, seed=engine_seed(exp.id, n),
                     noise_seed=seed, partitioning=partitioning_of(exp),
                     options=EngineOptions(prefetch=deps.limits.read_concurrency))
    return ri, global_ref, counted, record


def open_stored(deps: Deps, key: str, version_id: str | None = None) -> tuple[dict[str, Any], Stored]:
    """A stored safetensors object as lazy tensors read by range (ranged_model.open_model), and
    Stored("", its size): nothing but its header is read here."""
    obj = _existing(deps, key, version_id)
    return open_model(obj.size, obj.read)[0], Stored("", obj.size)


def hash_stored(deps: Deps, key: str, version_id: str | None = None) -> str:
    """The sha256 of a stored object, hashed over ranged reads of READ_BYTES (never held whole)."""
    obj = _existing(deps, key, version_id)
    h = hashlib.sha256()
    for a in range(0, obj.size, READ_BYTES):
        h.update(obj.read(a, min(obj.size, a + READ_BYTES)))
    return h.hexdigest()


def _existing(deps: Deps, key: str, version_id: str | None) -> RangedObject:
    """The stored object for ranged reads; LookupError if it is missing."""
    opened = open_ranged(deps.store, key, version_id=version_id)
    if opened is None:
        raise LookupError(f"{key} (version {version_id}) does not exist")
    return opened[0]


def build_model(deps: Deps, exp: Experiment, n: int,
                run: Callable[[RoundInputs], AggregationResult] | None = None,
                accepted: list[UpdateRecord] | None = None, usage: Usage | None = None,
                task: str = "aggregate", written: Written | None = None, ranged: bool = False,
                ) -> tuple[Stored, dict[str, Any], dict[str, float]]:
    """Run the strategy and write model, state and manifest (same inputs -> same model bytes),
    noting in `written` the versions this attempt wrote; the model's (sha256, size).

    `run` runs the round (default: here, the single plan; services/fanout.py hands in its
    reduce, and `usage` with its children's counts) over `accepted` (default: listed from the
    metadata store). The manifest's `cost` prices the usage plus this function's own. `ranged`
    (the fanout reduce) reads the global model and state by range where used (round_inputs)."""
    t0 = time.perf_counter()
    accepted = accepted_updates(deps, exp.id, n) if accepted is None else accepted
    ri, global_ref, counted, noise = round_inputs(deps, exp, n, accepted, ranged=ranged)
    t1 = time.perf_counter()
    result = (run or (lambda r: r.run(None)))(ri)
    if not global_ref.sha256:  # opened by range: hashed now that the round is computed (once)
        global_ref = Stored(hash_stored(deps, model_key(exp.id, n - 1), model_version_id(exp, n - 1)), global_ref.size)
    if noise is not None:  # which key and label seeded the noise: never the key itself
        result.info["privacy"]["noise"] = noise
    t2 = time.perf_counter()
    model, state_object, state_size = write_outputs(deps, exp, n, result.model, result.state, written)
    info = _json_safe(result.info)
    info.setdefault("plan", "single")
    sizes = [model.size, *([state_size] if result.state else []), MANIFEST_BYTES]
    usage = costing.aggregation_usage(usage if usage is not None else Usage(), info, len(accepted), global_ref.size,
                                      sum(v.nbytes for v in ri.state.values()) if ri.state else None, sizes)
    usage.task(task, costing.memory_mb(deps), time.perf_counter() - t0)
    info["cost"] = round_cost(usage)
    total = sum(u.num_examples or 0 for u in accepted)
    manifest = {
        "experiment_id": exp.id, "round": n, "strategy": {"name": exp.strategy_name, "params": exp.strategy_params},
        "global_model": model_entry(exp, n - 1, global_ref.sha256),
        "inputs": _with_clipping(info.get("inputs") or [
            {"client_id": u.client_id, "sha256": u.sha256, "num_examples": u.num_examples,
             "weight": (u.num_examples or 0) / total if total else 0.0} for u in accepted], accepted, counted),
        "update_limits": exp.update_limits.to_json(),
        "input_objects": [{"client_id": u.client_id, "key": update_key(exp.id, n, u.client_id),
                           "version_id": u.version_id, "size": u.size} for u in accepted],
        "output": {"key": model_key(exp.id, n), "sha256": model.sha256, "size": model.size},
        "state": state_object, "metrics": result.metrics, "info": info,
        "timings": {"load_seconds": t1 - t0, "aggregate_seconds": t2 - t1,
                    "write_seconds": time.perf_counter() - t2},
        **history.chain_fields(deps, exp.to_public(), n, global_ref),
    }
    stored = history.write_manifest(deps, manifest_key(exp.id, n),
                                    json.dumps(manifest, indent=1, sort_keys=True).encode(), written)
    round_info = {k: info[k] for k in ROUND_INFO_KEYS if k in info}  # lists of clients stay in the manifest
    round_info[STATE_SAVED] = state_object is not None  # the next round reads state only when this says so
    round_info["manifest_sha256"] = hashlib.sha256(stored).hexdigest()
    return model, round_info, dict(result.metrics)


def global_model_entry(exp: Experiment, version: int, data: bytes) -> dict[str, Any]:
    """The manifest's record of the model a round built on (its bytes are `data`)."""
    return model_entry(exp, version, hashlib.sha256(data).hexdigest())


def model_entry(exp: Experiment, version: int, sha256: str) -> dict[str, Any]:
    """A manifest's record of model `version`: key, sha256 and, for the initial model, the
    pinned object version (a re-run reads exactly that one)."""
    entry = {"key": model_key(exp.id, version), "sha256": sha256}
    pinned = model_version_id(exp, version)
    return entry | ({"version_id": pinned} if pinned else {})


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


def load_state(deps: Deps, experiment_id: str, n: int, *, ranged: bool = False) -> dict[str, Any]:
    """The optimizer state round `n` saved, read only when its round item records one (with
    `ranged`, as lazy tensors read by range where used: a fanout child reads none of Adam's m, v).

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
    if ranged:
        return open_stored(deps, key)[0]
    tensors, _ = decode(deps.store.get(key))
    return {k: v.copy() for k, v in tensors.items()}


def mark_applied(deps: Deps, experiment_id: str, n: int) -> None:
    """ACCEPTED -> APPLIED for the round's updates, batched by the connector (issue 14)."""
    todo = [u.client_id for u in deps.repo.list_updates(experiment_id, n, accepted_only=True)
            if u.status == UpdateStatus.ACCEPTED]
    if todo:
        deps.repo.mark_applied_many(experiment_id, n, todo, deps.clock())


def engine_seed(experiment_id: str, n: int) -> int:
    """The engine's public seed (for custom strategies' own randomness); never DP noise."""
    return int.from_bytes(hashlib.sha256(f"{experiment_id}:{n}".encode()).digest()[:8], "little")


def write_outputs(deps: Deps, exp: Experiment, n: int, model: Any, state: Any,
                  written: Written | None = None) -> tuple[Stored, dict | None, int]:
    """Stream version n's model (and the server state, if the strategy keeps one) into the store
    before any publish, so a crash re-runs to the same objects (a stream that fails stores
    nothing: the previous model stays current); (the model's sha256 and size, the manifest's
    state entry, state size). Each version written is noted in `written` (removed if the
    publish loses). No encoded copy of the model is held: it is hashed as it streams."""
    written = written if written is not None else Written()
    stream = encode_stream(model, model_metadata(exp.id, n, exp.strategy_name))
    version, stored = put_streamed(deps, model_key(exp.id, n), stream)
    written.output(model_key(exp.id, n), version)
    if not state:
        return stored, None, 0
    version, state_stored = put_streamed(deps, state_key(exp.id, n), encode_stream(state))
    written.output(state_key(exp.id, n), version)
    return stored, {"key": state_key(exp.id, n), "sha256": state_stored.sha256}, state_stored.size


def put_streamed(deps: Deps, key: str, chunks: Iterable[bytes]) -> tuple[str | None, Stored]:
    """`store.put_stream` of `chunks`, hashing and counting them on the way: (version, stored)."""
    digest, size = hashlib.sha256(), [0]

    def counted() -> Iterator[bytes]:
        for chunk in chunks:
            digest.update(chunk)
            size[0] += len(chunk)
            yield chunk

    version = deps.store.put_stream(key, counted())
    return version, Stored(digest.hexdigest(), size[0])


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so numpy scalars and tuples become plain types DynamoDB accepts."""
    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(value, default=default), parse_float=lambda s: float(s))
