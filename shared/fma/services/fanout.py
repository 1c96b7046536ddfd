"""The fanout plan's task handlers: start, piece, reduce (then publish) and fail.

One round runs as: `start` (lease; the round's plan object: its accepted updates, once) ->
`reduce` -> for each pass it asks for, `piece` x N (a Map; each writes one partial object
under partials/{exp}/{round:08d}/) -> `reduce` again ... -> the last `reduce` writes model,
state and manifest and publishes through the same lease and publish transaction as the single
plan. A child failing for good -> `fail` (the round FAILED with the reason). Step Functions
runs these on AWS (infra/constructs/aggregation.py), the local executor in a process pool
(fma/local/fanout.py): the same handlers, the same partitioning, the same bytes.

Every task is idempotent: a retried piece writes the same bytes to the same key; a retried
reduce re-reads the same pieces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from typing import Any

from fma.domain.aggregation import AggregationResult
from fma.domain.aggregation.fanout import PIECE_META, RoundInputs, compute_piece, decode_piece, encode_piece, reduce
from fma.domain.aggregation.passes import NeedPass
from fma.domain.cost import Usage
from fma.domain.records import UpdateRecord
from fma.domain.states import RoundState, UpdateStatus
from fma.services import aggregation as single
from fma.services import costing
from fma.services.deps import Deps
from fma.services.ranged_reads import open_ranged
from fma.services.unpublished import Written


def partials_prefix(experiment_id: str, n: int) -> str:
    return f"partials/{experiment_id}/{n:08d}/"


def plan_key(experiment_id: str, n: int) -> str:
    return partials_prefix(experiment_id, n) + "plan.json"


def piece_key(experiment_id: str, n: int, pass_index: int, piece: int) -> str:
    return partials_prefix(experiment_id, n) + f"pass-{pass_index:03d}/{piece:06d}.safetensors"


def items_key(experiment_id: str, n: int, pass_index: int) -> str:
    return partials_prefix(experiment_id, n) + f"pass-{pass_index:03d}/items.json"


def start(deps: Deps, experiment_id: str, n: int, owner: str) -> dict[str, Any]:
    """Take the lease and write the plan object (the accepted updates, listed once)."""
    t0 = time.perf_counter()
    exp = deps.repo.get_experiment(experiment_id)
    rnd = deps.repo.get_round(experiment_id, n)
    if exp is None or rnd is None:
        return {"status": "ignored", "reason": "unknown experiment or round"}
    if rnd.state == RoundState.PUBLISHED:
        single.mark_applied(deps, experiment_id, n)
        return {"status": "already_published", "sha256": rnd.model_sha256}
    if deps.repo.acquire_lease(experiment_id, n, owner, deps.clock(), deps.limits.lease_seconds) is None:
        return {"status": "busy"}
    accepted = single.accepted_updates(deps, experiment_id, n)
    plan = {"experiment_id": experiment_id, "round": n, "aggregation": exp.aggregation.to_json(),
            "updates": [_record_json(u) for u in accepted]}
    deps.store.put(plan_key(experiment_id, n), json.dumps(plan, sort_keys=True).encode(), "application/json")
    return {"status": "started", "experiment_id": experiment_id, "round": n, "owner": owner, "complete": 0,
            "started_at": deps.clock(), "updates": len(accepted),
            "spent": {"seconds": round(time.perf_counter() - t0, 6), "tasks": 1}}


def piece(deps: Deps, experiment_id: str, n: int, pass_index: int, index: int) -> dict[str, Any]:
    """Child task: compute piece `index` of pass `pass_index` and write its partial object."""
    t0 = time.perf_counter()
    inputs, object_bytes = _inputs(deps, experiment_id, n, noise=False)
    done = compute_piece(inputs, _loader(deps, experiment_id, n, {}), pass_index, index)
    done.facts.update(seconds=round(time.perf_counter() - t0, 6), memory_mb=costing.memory_mb(deps),
                      object_bytes=object_bytes, value_bytes=int(done.value.nbytes))
    key = piece_key(experiment_id, n, pass_index, index)
    deps.store.put(key, encode_piece(done))
    return {"status": "done", "key": key, "kind": done.kind, "bytes_read": done.facts.get("bytes_read", 0)}


def reduce_step(deps: Deps, experiment_id: str, n: int, owner: str, complete: int,
                started_at: float | None = None, spent: dict[str, Any] | None = None) -> dict[str, Any]:
    """Reduce task: the next pass to map (`status` "map", its items written as a JSON list
    for the Map to read), or the round published through the lease (`status` as single's).
    `spent` carries the execution's earlier task seconds (for the round's cost)."""
    t0 = time.perf_counter()
    spent = dict(spent or {})
    exp = deps.repo.get_experiment(experiment_id)
    rnd = deps.repo.get_round(experiment_id, n)
    if exp is None or rnd is None:
        return {"status": "ignored", "reason": "unknown experiment or round"}
    if rnd.state == RoundState.PUBLISHED:
        single.mark_applied(deps, experiment_id, n)
        return {"status": "already_published", "sha256": rnd.model_sha256}
    facts: dict[tuple[int, int], dict[str, Any]] = {}
    load = _loader(deps, experiment_id, n, facts)

    def run(ri: RoundInputs) -> AggregationResult:
        out = reduce(ri, load, complete)
        if isinstance(out, NeedPass):
            raise _MapNext(out)
        _complete_facts(deps, experiment_id, n, complete, facts)  # pieces a lazy result reads later
        out.info["plan"] = "fanout"
        out.info["fanout"] = _summary(facts)
        vars(usage).update(vars(costing.fanout_usage(facts, len(ri.updates), spent, costing.memory_mb(deps))))
        return out

    usage, written = Usage(), Written()
    try:
        model, info, metrics = single.build_model(deps, exp, n, run=run, accepted=_plan_updates(deps, exp.id, n),
                                                        usage=usage, task="reduce", written=written, ranged=True)
    except _MapNext as nxt:
        spent = {"seconds": float(spent.get("seconds") or 0.0) + time.perf_counter() - t0,
                 "tasks": int(spent.get("tasks") or 0) + 1}
        return _map_items(deps, experiment_id, n, owner, nxt.need) | {"spent": spent}
    started = started_at if started_at is not None else deps.clock()
    return single.publish(deps, exp, rnd, owner, started, model, info, metrics, written)


def fail(deps: Deps, experiment_id: str, n: int, reason: str) -> dict[str, Any]:
    """A child (or the reduce) failed for good: the round takes today's failure path."""
    failed = deps.repo.fail_round(experiment_id, n, f"AGGREGATION_FAILED: fanout: {reason}"[:1000])
    return {"status": "failed" if failed else "not_failed", "reason": reason}


class _MapNext(Exception):
    def __init__(self, need: NeedPass) -> None:
        super().__init__(str(need))
        self.need = need


def _map_items(deps: Deps, experiment_id: str, n: int, owner: str, need: NeedPass) -> dict[str, Any]:
    items = [{"experiment_id": experiment_id, "round": n, "pass": need.index, "piece": i}
             for i in range(need.npieces)]
    key = items_key(experiment_id, n, need.index)
    deps.store.put(key, json.dumps(items).encode(), "application/json")
    return {"status": "map", "experiment_id": experiment_id, "round": n, "owner": owner,
            "pass": need.index, "kind": need.kind, "pieces": need.npieces, "items_key": key,
            "next_complete": need.index + 1}


def _complete_facts(deps: Deps, experiment_id: str, n: int, complete: int,
                    facts: dict[tuple[int, int], dict[str, Any]]) -> None:
    """Facts of every piece of the passes done, read from the pieces' headers where the reduce
    has not loaded a piece yet (a result left in its pieces is read while the model streams)."""
    for p in range(complete):
        count = len(json.loads(deps.store.get(items_key(experiment_id, n, p))))
        for i in range(count):
            if (p, i) not in facts:
                obj, _ = open_ranged(deps.store, piece_key(experiment_id, n, p, i)) or (None, None)
                if obj is None:
                    raise LookupError(f"piece {i} of pass {p} is missing")
                facts[(p, i)] = json.loads(obj.read_header()[0].metadata.get(PIECE_META, "{}"))


def _summary(facts: dict[tuple[int, int], dict[str, Any]]) -> dict[str, Any]:
    """What the children did, from their partial objects: pieces per pass, bytes and requests."""
    passes: dict[int, int] = {}
    for p, _ in facts:
        passes[p] = passes.get(p, 0) + 1
    return {"pieces": [passes[p] for p in sorted(passes)],
            "bytes_read": sum(int(f.get("bytes_read", 0)) for f in facts.values()),
            "requests": sum(int(f.get("requests", 0)) for f in facts.values())}


def _loader(deps: Deps, experiment_id: str, n: int, facts: dict[tuple[int, int], dict[str, Any]]):
    def load(pass_index: int, index: int):
        value, meta = decode_piece(deps.store.get(piece_key(experiment_id, n, pass_index, index)))
        facts[(pass_index, index)] = meta
        return value

    return load


def _inputs(deps: Deps, experiment_id: str, n: int, *, noise: bool) -> tuple[RoundInputs, int]:
    """The round's inputs from its plan object (the global model and state opened by range: a
    child reads only the parts its piece uses), and the bytes of the whole objects read (the plan)."""
    exp = deps.repo.get_experiment(experiment_id)
    if exp is None:
        raise ValueError(f"unknown experiment {experiment_id}")
    plan = deps.store.get(plan_key(experiment_id, n))
    ri, _, _, _ = single.round_inputs(deps, exp, n, _plan_updates(deps, experiment_id, n, plan), noise=noise,
                                      ranged=True)
    return ri, len(plan)


def _plan_updates(deps: Deps, experiment_id: str, n: int, data: bytes | None = None) -> list[UpdateRecord]:
    plan = json.loads(deps.store.get(plan_key(experiment_id, n)) if data is None else data)
    return [_record(u) for u in plan["updates"]]


def _record_json(u: UpdateRecord) -> dict[str, Any]:
    return dataclasses.asdict(u) | {"status": str(u.status)}


def _record(data: dict[str, Any]) -> UpdateRecord:
    return UpdateRecord(**(data | {"status": UpdateStatus(data["status"])}))


def run_task(deps: Deps, event: dict[str, Any]) -> dict[str, Any]:
    """One state-machine task from its event (the aggregate and aggregate_piece handlers)."""
    experiment_id, n, task = event["experiment_id"], event["round"], event.get("task")
    if task == "start":
        return start(deps, experiment_id, n, _text(event, "owner"))
    if task == "reduce":
        started = event.get("started_at")
        spent = event.get("spent")
        return reduce_step(deps, experiment_id, n, _text(event, "owner"), _count(event, "complete"),
                           float(started) if isinstance(started, int | float) else None,
                           spent if isinstance(spent, dict) else None)
    if task == "piece":
        return piece(deps, experiment_id, n, _count(event, "pass"), _count(event, "piece"))
    if task == "fail":
        return fail(deps, experiment_id, n, failure_reason(event.get("error")))
    return {"status": "ignored", "reason": f"unknown task {str(task)[:40]!r}"}


def failure_reason(error: object) -> str:
    """A Step Functions catch's {"Error", "Cause"} (or a local executor's text) as one line."""
    if isinstance(error, dict):
        cause = str(error.get("Cause") or "")
        with contextlib.suppress(ValueError, AttributeError):  # a Lambda error's Cause: JSON, errorMessage
            cause = str(json.loads(cause).get("errorMessage") or cause)
        return f"{error.get('Error') or 'error'}: {cause}"[:500]
    return str(error or "a fanout task failed")[:500]


def _text(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"fanout task needs {name} (a string)")
    return value


def _count(event: dict[str, Any], name: str) -> int:
    value = event.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"fanout task needs {name} (an integer >= 0)")
    return value
