"""Scale model (issue 13): a discrete-event simulation of one round driven by FMA's recorded
access pattern against AWS's documented limits, for the design before issue 13 and after.

    python benchmarks/scale.py                     # the grid, both designs, side by side
    python benchmarks/scale.py --raised            # the same with the quotas docs/scale.md raises
    python benchmarks/scale.py --record after      # re-record benchmarks/profiles/after.json

`--record NAME` runs one small round through the real handlers on moto (benchmarks/scalemodel/
record.py) and writes the profile of every operation (register, download, upload, ingest, seal,
poll, publish) with the stack's configuration at this commit. docs/scale.md says how the
before-profile was recorded from git.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ROOT = Path(os.environ.get("FMA_SCALE_ROOT", HERE.parent))
for extra in (ROOT, ROOT / "shared"):  # this commit's code first (a venv's editable install is another's)
    if str(extra) in sys.path:
        sys.path.remove(str(extra))
    sys.path.insert(1, str(extra))

from scalemodel import profiles, report  # noqa: E402

PROFILES = HERE / "profiles"


def stack_config() -> dict[str, Any]:
    """The values of this commit's stack and code the simulation needs (read from whichever of
    them the commit has: the retry constants moved to fma.adapters.dynamo_retry in issue 13 item 2)."""
    import dataclasses

    from fma.adapters.dynamo_models import TableSchema
    from fma.services import failures
    from infra.config import Config

    names = ("api_rate_limit", "api_burst_limit", "ingest_batch_size", "ingest_max_receive_count",
             "max_ingest_attempts", "ingest_timeout_s", "poll_retry_after_seconds", "authorizer_cache_seconds",
             "api_memory_mb", "authorizer_memory_mb", "ingest_memory_mb", "ingest_max_concurrency")
    fields = {f.name: getattr(Config(), f.name) for f in dataclasses.fields(Config) if f.name in names}
    return fields | _conflict_retries() | {
        "ingest_retry_base_seconds": failures.INGEST_RETRY_BASE_SECONDS,
        "ingest_retry_cap_seconds": failures.INGEST_RETRY_CAP_SECONDS,
        "ddb_retry_attempts": TableSchema.Meta.max_retry_attempts,
    }


def _conflict_retries() -> dict[str, Any]:
    """How the commit retries a conflicted write: dynamo_retry.POLICY, or transact()'s own loop."""
    import importlib.util
    import inspect

    if importlib.util.find_spec("fma.adapters.dynamo_retry") is not None:
        from fma.adapters.dynamo_retry import POLICY

        return {"transact_attempts": POLICY.attempts, "transact_base_seconds": POLICY.base_seconds,
                "transact_cap_seconds": POLICY.cap_seconds, "transact_jitter_low": 0.5,
                "single_write_attempts": POLICY.attempts}
    from fma.adapters.dynamo_common import transact

    return {"transact_attempts": inspect.signature(transact).parameters["attempts"].default}


def record_profile(name: str, clients: int) -> Path:
    from scalemodel.record import record

    recording = record(clients=clients)
    git = ["git", "-C", str(ROOT), "rev-parse", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    profile = {"meta": {"name": name, "commit": commit, "clients": clients, "config": stack_config(),
                        "command": f"python benchmarks/scale.py --record {name} --clients {clients}"},
               "operations": profiles.build(recording)}
    path = PROFILES / f"{name}.json"
    profiles.save(profile, path)
    return path


def _overrides(pairs: list[str]) -> dict[str, float]:
    import dataclasses

    from scalemodel.limits import Limits

    known = {f.name for f in dataclasses.fields(Limits)}
    out: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in known or not value:
            raise SystemExit(f"--set {pair}: expected FIELD=VALUE with FIELD one of {sorted(known)}")
        out[name] = int(value) if value.isdigit() else float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", metavar="NAME", help="record benchmarks/profiles/NAME.json from this commit")
    parser.add_argument("--clients", type=int, default=30, help="clients of the recorded round")
    parser.add_argument("--raised", action="store_true", help="with the quotas docs/scale.md raises")
    parser.add_argument("--designs", default="before,after")
    parser.add_argument("--quick", action="store_true", help="the 1k and 10k rows only")
    parser.add_argument("--what-if", choices=report.WHAT_IF, help="a design change that is not built (labelled)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a limit of scalemodel.limits.Limits, e.g. ingest_max_concurrency=200")
    args = parser.parse_args(argv)
    if args.record:
        print(f"wrote {record_profile(args.record, args.clients)}")
        return 0
    names = args.designs.split(",")
    loaded = {n: profiles.load(PROFILES / f"{n}.json") for n in names}
    started = time.monotonic()
    clients = report.CLIENTS[:2] if args.quick else report.CLIENTS
    overrides = _overrides(args.set)
    results = report.grid(loaded, raised=args.raised, clients=clients, what_if=args.what_if, overrides=overrides)
    quotas = "raised quotas (docs/scale.md)" if args.raised else "default quotas and the stack's defaults"
    quotas += f", WHAT-IF {args.what_if} (not built)" if args.what_if else ""
    quotas += "".join(f", {k}={v}" for k, v in overrides.items())
    for n in names:
        print(f"\n## {n} ({loaded[n]['meta']['commit'][:10]}), {quotas}\n")
        print("\n".join(report.table(results, n)))
    if len(names) == 2:
        print(f"\n## side by side: {names[0]} / {names[1]}\n")
        print("\n".join(report.side_by_side(results, *names)))
    print()
    for n in names:
        print(report.goal(results, n))
    print("\nmost throttled (tries) per cell:")
    for key, r in results.items():
        print(f"  {key[0]} {key[1]:,} {key[2]}: {report.hottest(r)}")
    print(f"(simulated in {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
