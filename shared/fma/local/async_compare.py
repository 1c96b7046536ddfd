"""`fma demo --async` and `make bench-async`: sync rounds against async (FedBuff) buffers with
stragglers, on local mode and real SDK clients (issue 15, docs/async.md).

Digits over 6 clients (non-IID shards), 2 of them 5x slower (simulated training time before
the real local SGD). Three experiments on one local stack, one after the other:
  - sync, quota 6: every round waits for the slowest client (R rounds: N = 6R updates);
  - sync, quota 4: rounds seal with the 4 fastest, stragglers' updates arrive LATE;
  - async, K = 3: each buffer of 3 accepted updates publishes a version; stale ones count less.
The target is the accuracy sync quota 6 ends with. Printed per run: wall time until a
published model first reaches it, the ratio to sync quota 6, and the accuracy after the same
N client updates (sync quota 4 and async run up to 2N updates so that the target is reachable).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fma.local.digits import accuracy, initial_weights, load_split, train

CLIENTS = 6
SLOW = (0, 1)  # the two stragglers
SLOWDOWN = 5.0
SEED = 0


@dataclass
class Run:
    label: str
    rounds: dict[str, Any]
    per_version: int  # client updates aggregated per published version
    seen: dict[int, float] = field(default_factory=dict)  # version -> seconds after the clients started
    accuracy: dict[int, float] = field(default_factory=dict)
    wall: float = 0.0

    def time_to(self, target: float) -> float | None:
        hits = [self.seen[v] for v in sorted(self.accuracy) if self.accuracy[v] >= target - 1e-9 and v in self.seen]
        return hits[0] if hits else None

    def accuracy_after(self, updates: int) -> float | None:
        version = updates // self.per_version
        return self.accuracy.get(version)


def _client(url: str, exp_id: str, enroll: str, i: int, split, seconds: float, epochs: int, lr: float,
            errors: list[str]) -> None:
    from fma_client import Client

    idx = split.client_indices[i]
    x, y = split.x_train[idx], split.y_train[idx]

    def train_fn(weights, config):
        time.sleep(seconds * (SLOWDOWN if i in SLOW else 1.0))  # the simulated device
        new, loss = train(weights, x, y, epochs=epochs, lr=lr, seed=SEED * 1000 + i * 100 + int(config["round"]))
        return new, len(y), {"loss": loss}

    try:
        client = Client(url, exp_id, enrollment_token=enroll, name=f"{exp_id}-{i}", persist_registration=False,
                        poll_interval=0.1)
        # seconds-long rounds: every mode polls its update's validation at 0.1 s, not 0.5 s
        client.waiter = dataclasses.replace(client.waiter, interval=0.1)
        client.run(train_fn)
    except Exception as exc:  # reported by the caller: a benchmark row must not hide a failed client
        errors.append(f"client {i}: {type(exc).__name__}: {exc}")


def run_one(dev, url: str, run: Run, split, seconds: float, epochs: int, lr: float, timeout: float) -> Run:
    """One experiment with 6 client threads; records when each version was first seen."""
    exp = dev.create_experiment(f"async-compare {run.label}", initial_weights(SEED), strategy="fedavg",
                                rounds=run.rounds, client_config={})
    dev.wait_until_running(exp["id"])
    enroll = dev.enrollment_token(exp["id"], max_uses=CLIENTS)["token"]
    errors: list[str] = []
    threads = [threading.Thread(target=_client, args=(url, exp["id"], enroll, i, split, seconds, epochs, lr, errors),
                                daemon=True) for i in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    status = "RUNNING"
    while status in ("RUNNING", "PAUSED") and time.monotonic() - start < timeout:
        body = dev.experiment(exp["id"])
        status, version = body["status"], body.get("model_version") or 0
        for v in range(1, version + 1):
            run.seen.setdefault(v, time.monotonic() - start)
        time.sleep(0.05)
    run.wall = time.monotonic() - start
    for t in threads:
        t.join(timeout=30)
    if status != "COMPLETED" or errors:
        raise RuntimeError(f"{run.label}: experiment {status}; {errors[:3]}")
    for v in sorted(run.seen):
        run.accuracy[v] = accuracy(dev.download_model(exp["id"], v), split.x_test, split.y_test)
    print(f"  {run.label}: {len(run.seen)} versions in {run.wall:.1f} s, final accuracy "
          f"{run.accuracy[max(run.accuracy)]:.3f}", flush=True)
    return run


def runs_for(rounds: int) -> list[Run]:
    """Sync quota 6 for `rounds` rounds (N = 6 x rounds updates); the others up to 2N."""
    n = CLIENTS * rounds
    return [
        Run("sync, quota 6", {"min_updates": 6, "total_rounds": rounds}, 6),
        Run("sync, quota 4", {"min_updates": 4, "total_rounds": 2 * n // 4}, 4),
        Run("async, K=3", {"mode": "async", "buffer_size": 3, "max_staleness": 10, "total_rounds": 2 * n // 3,
                           "staleness": {"fn": "polynomial", "exponent": 0.5}}, 3),
    ]


def report(runs: list[Run], rounds: int) -> float | None:
    """Print the comparison table; return async's time-to-target ratio to sync quota 6."""
    n = CLIENTS * rounds
    base = runs[0]
    target = base.accuracy[max(base.accuracy)]
    base_time = base.time_to(target)
    print(f"\ntarget: {target:.3f}, the test accuracy sync quota 6 reaches after {rounds} rounds ({n} updates)")
    print(f"  {'run':<16}{'versions':>9}{'wall s':>8}{'to target s':>13}{'ratio':>7}{f'acc @ {n} upd':>13}")
    ratio = None
    for run in runs:
        t = run.time_to(target)
        r = t / base_time if t is not None and base_time else None
        acc = run.accuracy_after(n)
        print(f"  {run.label:<16}{len(run.seen):>9}{run.wall:>8.1f}{_fmt(t, '.1f'):>13}{_fmt(r, '.2f'):>7}"
              f"{_fmt(acc, '.3f'):>13}")
        if run.label.startswith("async"):
            ratio = r
    goal = "met" if ratio is not None and ratio <= 0.5 else "NOT met"
    print(f"ASYNC_RATIO time_to_target async/sync_quota_6={_fmt(ratio, '.2f')} (goal <= 0.50: {goal})", flush=True)
    return ratio


def _fmt(value: float | None, spec: str) -> str:
    return "never" if value is None else format(value, spec)


def compare(args: argparse.Namespace) -> int:
    from fma.local.app import LocalStack
    from fma_client import Developer

    os.environ.setdefault("FMA_POLL_RETRY_AFTER_SECONDS", "1")  # seconds-long rounds: poll at 1 s
    split = load_split(CLIENTS, SEED)
    seconds = 0.4 if args.quick else 1.0
    print(f"digits, {CLIENTS} clients (non-IID), clients {list(SLOW)} {SLOWDOWN:g}x slower: simulated training "
          f"{seconds:g} s / {seconds * SLOWDOWN:g} s per update", flush=True)
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="fma-async-compare-"))
    stack = LocalStack(port=args.port, state_dir=state_dir, ephemeral=True, workers=0,
                       sweep_seconds=1.0).start()
    try:
        dev = Developer(stack.url, stack.admin_token)
        runs = [run_one(dev, stack.url, run, split, seconds, 2, 1.0, timeout=60 * seconds * args.rounds * 6)
                for run in runs_for(args.rounds)]
    finally:
        stack.stop()
    report(runs, args.rounds)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=4, help="rounds of sync quota 6 (N = 6 x rounds updates)")
    p.add_argument("--quick", action="store_true", help="shorter simulated training")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--state-dir", default=None, help="where the admin token goes (default: a temporary folder)")
    return compare(p.parse_args(argv))
