"""A profile compiled for the simulator: per operation, its steps on named resources.

Resources are key classes with a multiplicity (`fanout`): one key (`EXP#{exp}`, a GSI key),
or the class's shards (`EXP#{exp}#P{k}`: S of them; enrolled and use tallies: `tally_shards(S)`;
`DUE_UPLOAD#{k}`: 32, from fma.domain.sharding), or one key per client, which no two clients
share and the model leaves out of contention. A sharded class spreads its load evenly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scalemodel.profiles import scope


def fanout(pk: str, sk: str, shards: int) -> int:
    if "{k}" not in pk:
        return 1
    from fma.domain.sharding import UPLOAD_DUE_SHARDS, tally_shards

    if pk.startswith("DUE_UPLOAD"):
        return UPLOAD_DUE_SHARDS
    if sk in ("CLIENTS", "USES") or "#U{k}" in pk:
        return tally_shards(shards)
    return shards


@dataclass
class Step:
    kind: str                      # "read", "write", "s3"
    resource: tuple = ()           # read/s3: the resource; write: unused (see items)
    units: float = 0.0             # units per request (read units; S3: requests)
    count: int = 1
    txn: bool = False
    items: list = field(default_factory=list)   # write: [(resource, units, item key or None)]


@dataclass
class Plan:
    steps: list
    api: int = 0
    sqs: int = 0
    invoke: int = 0
    read_units: float = 0.0
    write_units: float = 0.0
    s3_put: int = 0
    s3_get: int = 0
    cdn: int = 0                   # CloudFront requests (pointer polls)


def _resource(index: str, pk: str, sk: str, shards: int, what: str) -> tuple:
    return (what, index, pk, sk if "{k}" in pk else "", fanout(pk, sk, shards))


def compile_op(requests: list[dict[str, Any]], shards: int, scale: float = 1.0) -> Plan:
    """`scale` multiplies the requests that are per client (a publish reads every update)."""
    plan = Plan([])
    for req in requests:
        per_client = any("{client}" in str(v) for v in req.values()) or "updates/" in req.get("prefix", "")
        n = max(1, round(req["count"] * (scale if per_client else 1.0)))
        if req["type"] == "calls":
            setattr(plan, req["name"], getattr(plan, req["name"]) + req["count"])
        elif req["type"] == "read":
            plan.read_units += req["rcu"] * n
            if scope(req["pk"]) != "each":
                plan.steps.append(Step("read", _resource(req["index"], req["pk"], req["sk"], shards, "rcu"),
                                       req["rcu"], n))
        elif req["type"] == "s3":
            what = "s3put" if req["call"] in ("PUT", "DELETE", "LIST") else "s3get"
            plan.s3_put += n if what == "s3put" else 0
            plan.s3_get += n if what == "s3get" else 0
            plan.steps.append(Step("s3", (what, req["prefix"]), 1.0, n))
        elif req["type"] == "write" and req["ok"]:
            plan.steps.append(_write(req, shards, n, plan))
    return plan


def _write(req: dict[str, Any], shards: int, n: int, plan: Plan) -> Step:
    factor = 2 if req["txn"] else 1
    items = []
    for item in req["items"]:
        units = item["wcu"] * factor
        plan.write_units += units * n
        if scope(item["pk"]) == "each":
            continue
        resource = _resource(item["index"], item["pk"], item["sk"], shards, "wcu")
        contended = item["index"] == "table" and scope(item["pk"] + item["sk"]) != "each"
        items.append((resource, units, (item["pk"], item["sk"]) if contended else None))
    return Step("write", count=n, txn=req["txn"], items=items)


def compile_profile(profile: dict[str, Any], clients: int) -> dict[str, Plan]:
    """Every operation of `profile` for a round of `clients` (S from their count, as the
    experiment derives it when created with expected_clients = clients)."""
    from fma.domain.sharding import shard_count

    shards = shard_count(clients)
    recorded = max(1, profile["meta"]["clients"])
    plans = {op: compile_op(body["requests"], shards, clients / recorded if op == "publish" else 1.0)
             for op, body in profile["operations"].items()}
    plans["fail"] = _fail_plan(profile["operations"]["ingest"]["requests"], shards)
    return plans


def _fail_plan(ingest: list[dict[str, Any]], shards: int) -> Plan:
    """ingest_failed's FAILED mark: one write on the update item (where the accept writes it)."""
    for req in ingest:
        for item in req.get("items", []) if req["type"] == "write" else []:
            if item["sk"].startswith("UPDATE#"):
                one = {"type": "write", "call": "update_item", "txn": False, "ok": True, "count": 1,
                       "items": [dict(item, kind="update")]}
                return compile_op([one], shards)
    return Plan([])
