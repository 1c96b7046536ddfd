"""The grid: every design x clients x arrival window, and the tables it prints."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from scalemodel.limits import RAISED, from_config, sampled
from scalemodel.plan import Plan, compile_op, compile_profile
from scalemodel.sim import Result, Simulation

CLIENTS = (1_000, 10_000, 100_000)
WINDOWS = ((60.0, "60 s"), (300.0, "5 min"), (1800.0, "30 min"))


#: rounds above this many clients are simulated with this many, standing for all (limits.sampled).
SAMPLE = 10_000


#: what-ifs (not built), combinable with "+": "pointer-polls": polls read a cached pointer object
#: through CloudFront (docs/scale.md, "Cheap polling") instead of the API and DynamoDB;
#: "experiment-cache": each Lambda environment reads the experiment (META and its enrolled
#: tally shards) at most once a second instead of on every request.
WHAT_IF = ("pointer-polls", "experiment-cache", "pointer-polls+experiment-cache")
CACHED = (("EXP#{exp}", "META"), ("EXP#{exp}#N{k}", "CLIENTS"))


def _cached(profile: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The profile without the cached reads, and one request of each (the per-second refresh)."""
    out = copy.deepcopy(profile)
    refresh: dict[tuple, dict[str, Any]] = {}
    for body in out["operations"].values():
        keep = []
        for req in body["requests"]:
            key = (req.get("pk"), req.get("sk"))
            if req["type"] == "read" and key in CACHED:
                refresh.setdefault(key, dict(req, count=32 if key[1] == "CLIENTS" else 1))
            else:
                keep.append(req)
        body["requests"] = keep
    return out, list(refresh.values())


def shard_count(clients: int) -> int:
    from fma.domain.sharding import shard_count as count

    return count(clients)


def simulate(profile: dict[str, Any], clients: int, window: float, raised: bool = False, seed: int = 0,
             sample: int | None = SAMPLE, what_if: str | None = None,
             overrides: dict[str, float] | None = None) -> Result:
    """One round of `clients` arriving over `window` seconds under the design of `profile`
    (`overrides`: Limits fields set by hand, e.g. ingest_max_concurrency)."""
    limits = from_config(profile["meta"]["config"])
    if raised:
        limits = replace(limits, **RAISED)
    limits = replace(limits, **(overrides or {}))
    wanted = set((what_if or "").split("+")) - {""}
    refresh: list[dict[str, Any]] = []
    if "experiment-cache" in wanted:
        profile, refresh = _cached(profile)
    plans = compile_profile(profile, clients)
    if "pointer-polls" in wanted:
        plans["poll"] = Plan([], cdn=1)
    plans["refresh"] = compile_op(refresh, shard_count(clients))
    simulated = min(clients, sample or clients)
    f = simulated / clients
    result = Simulation(plans, sampled(limits, f), simulated, window, seed=seed).run()
    out = result.scaled(clients, 1 / f) if f < 1 else result
    publish = plans["publish"]  # once per round, at the round's full size: its requests' cost
    out.usage.update({"ddb_read_unit": publish.read_units, "ddb_write_unit": publish.write_units,
                      "s3_put": publish.s3_put, "s3_get": publish.s3_get})
    return out


def grid(profiles: dict[str, dict[str, Any]], raised: bool = False, clients: tuple[int, ...] = CLIENTS,
         windows: tuple = WINDOWS, sample: int | None = SAMPLE,
         what_if: str | None = None, overrides: dict[str, float] | None = None,
         ) -> dict[tuple[str, int, str], Result]:
    return {(name, n, label): simulate(p, n, w, raised, sample=sample, what_if=what_if, overrides=overrides)
            for name, p in profiles.items()
            for n in clients for w, label in windows}


def _sealed(r: Result) -> str:
    if r.sealed_at is not None:
        return f"{r.sealed_at:,.0f} s"
    return f"never ({r.accepted:,} of {r.clients:,})"


def row(r: Result) -> dict[str, str]:
    dynamo = sum(v for k, v in r.throttled.items() if k.startswith(("dynamodb", "s3")))
    api = sum(v for k, v in r.throttled.items() if k.startswith(("api", "lambda")))
    registered = f"{r.registered_at:,.0f} s" if r.registered_at is not None else f"{r.registered:,}"
    return {"sealed": _sealed(r), "all registered": registered, "throttled DDB+S3": f"{dynamo:,.0f}",
            "throttled API/Lambda": f"{api:,.0f}",
            "conflicted": f"{r.conflicted:,}", "retries": f"{r.retries:,}", "DLQ": f"{r.dlq:,}",
            "FAILED": f"{r.failed_updates:,}", "gave up": f"{r.gave_up:,}", "cold starts": f"{r.cold_starts:,}",
            "cost": f"${r.cost():,.2f}"}


def table(results: dict[tuple[str, int, str], Result], design: str) -> list[str]:
    keys = [k for k in results if k[0] == design]
    cols = list(row(results[keys[0]]))
    lines = [f"| clients | window | {' | '.join(cols)} |", "|---|---|" + "---|" * len(cols)]
    for k in keys:
        lines.append(f"| {k[1]:,} | {k[2]} | {' | '.join(row(results[k]).values())} |")
    return lines


def side_by_side(results: dict[tuple[str, int, str], Result], before: str, after: str) -> list[str]:
    lines = ["| clients | window | sealed (before) | sealed (after) | DLQ (before / after) | "
             "throttled+conflicted (before / after) | cost (before / after) |", "|---|---|---|---|---|---|---|"]
    for (design, n, label), r in results.items():
        if design != before:
            continue
        a = results[(after, n, label)]
        lines.append(f"| {n:,} | {label} | {_sealed(r)} | {_sealed(a)} | {r.dlq:,} / {a.dlq:,} | "
                     f"{_trouble(r):,.0f} / {_trouble(a):,.0f} | ${r.cost():,.2f} / ${a.cost():,.2f} |")
    return lines


def _trouble(r: Result) -> float:
    return sum(r.throttled.values()) + r.conflicted


def goal(results: dict[tuple[str, int, str], Result], design: str) -> str:
    r = results.get((design, 100_000, "5 min"))
    if r is None:
        return "GOAL not simulated"
    held = r.sealed_at is not None and r.dlq == 0
    return (f"GOAL 100000 clients in 5 min: {'HOLDS' if held else 'DOES NOT HOLD'} for {design} "
            f"(sealed={_sealed(r)}, dlq={r.dlq}); most throttled: {hottest(r)}")


def label(resource: tuple) -> str:
    if resource[0] == "api":
        return f"API Gateway {resource[1]}"
    if resource[0].startswith("s3"):
        return f"S3 {resource[0][2:].upper()} {resource[1]}"
    shards = f" (x{resource[-1]})" if resource[-1] > 1 else ""
    where = "" if resource[1] == "table" else f"GSI {resource[1]} "
    sk = f"/{resource[3]}" if resource[3] else ""
    return f"{resource[0].upper()} {where}{resource[2]}{sk}{shards}"


def hottest(r: Result, limit: int = 3) -> str:
    top = [(k, v) for k, v in r.hot.most_common(limit) if v >= 0.5]
    return ", ".join(f"{label(k)} {v:,.0f}" for k, v in top) or "nothing"
