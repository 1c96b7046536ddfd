"""`fma demo` / `make demo`: federated softmax regression on digits with local clients.

Starts local mode, creates a FedAvg experiment, runs one process per client on its own
non-IID shard, shows each round's progress and the global model's test accuracy, and ends
with federated vs. centralized vs. local-only accuracy side by side.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fma.local.digits import accuracy, initial_weights, load_split, train

SEED = 0


def _baselines(split, epochs: int, lr: float) -> tuple[float, list[float]]:
    central, _ = train(initial_weights(SEED), split.x_train, split.y_train, epochs=epochs, lr=lr, seed=SEED)
    local = []
    for i, idx in enumerate(split.client_indices):
        w, _ = train(initial_weights(SEED), split.x_train[idx], split.y_train[idx], epochs=epochs, lr=lr, seed=i)
        local.append(accuracy(w, split.x_test, split.y_test))
    return accuracy(central, split.x_test, split.y_test), local


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = min(width, int(width * done / max(total, 1)))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _spawn_clients(url: str, exp_id: str, enroll: str, count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "fma.local.demo_client", "--url", url, "--experiment", exp_id,
                              "--enrollment-token", enroll, "--index", str(i), "--clients", str(count),
                              "--seed", str(SEED)]) for i in range(count)]


def _follow_rounds(dev, exp_id: str, rounds: int, quota: int, split, timeout: float) -> list[float]:
    """Print a bar per round as updates arrive, then the published model's test accuracy."""
    accs: list[float] = []
    deadline = time.monotonic() + timeout
    shown: dict[int, tuple] = {}
    while len(accs) < rounds:
        if time.monotonic() > deadline:
            raise TimeoutError(f"round {len(accs) + 1} did not publish within {timeout:.0f} s")
        for r in dev.rounds(exp_id):
            n = r["round"]
            key = (r["state"], r["accepted"])
            if n <= len(accs) or shown.get(n) == key:
                continue
            shown[n] = key
            print(f"round {n}/{rounds} {_bar(r['accepted'], quota)} {r['accepted']}/{quota} updates  {r['state']}",
                  flush=True)
            if r["state"] == "PUBLISHED" and n == len(accs) + 1:
                acc = accuracy(dev.download_model(exp_id, n), split.x_test, split.y_test)
                accs.append(acc)
                loss = (r.get("metrics") or {}).get("loss")
                print(f"round {n}/{rounds} published: global test accuracy {acc:.3f}"
                      + (f"  (mean client loss {loss:.3f})" if loss is not None else ""), flush=True)
        time.sleep(0.3)
    return accs


def run_demo(args: argparse.Namespace) -> int:
    from fma.local.app import LocalStack
    from fma_client import Developer

    epochs, lr = (2, 1.0) if args.quick else (5, 0.3)
    split = load_split(args.clients, SEED)
    central, local = _baselines(split, epochs * args.rounds, lr)
    print(f"digits: {len(split.y_train)} train / {len(split.y_test)} test images, {args.clients} clients "
          f"with non-IID shards of sizes {[len(i) for i in split.client_indices]}", flush=True)
    stack = LocalStack(port=args.port, state_dir=Path(args.state_dir), ephemeral=True,
                       backend=getattr(args, "backend", "sqlite_fs"), workers=getattr(args, "workers", 0)).start()
    procs: list[subprocess.Popen] = []
    try:
        print(f"local mode up at {stack.url} (admin token in {Path(args.state_dir) / 'admin-token'})", flush=True)
        dev = Developer(stack.url, stack.admin_token)
        exp = dev.create_experiment("digits-demo", initial_weights(SEED), strategy="fedavg",
                                    rounds={"min_updates": args.quota, "total_rounds": args.rounds},
                                    client_config={"epochs": epochs, "lr": lr})
        enroll = dev.enrollment_token(exp["id"], max_uses=args.clients)["token"]
        print(f"experiment {exp['id']}: FedAvg, {args.rounds} rounds, quota {args.quota} of {args.clients} clients",
              flush=True)
        procs = _spawn_clients(stack.url, exp["id"], enroll, args.clients)
        accs = _follow_rounds(dev, exp["id"], args.rounds, args.quota, split, timeout=120.0 * args.rounds)
        for p in procs:
            p.wait(timeout=30)
        print("\n  model                          test accuracy")
        print(f"  federated (FMA, {args.rounds} rounds)         {accs[-1]:.3f}")
        print(f"  centralized (all data)          {central:.3f}")
        print(f"  local-only, best single client  {max(local):.3f}")
        print(f"  local-only, mean over clients   {float(np.mean(local)):.3f}")
        print(f"  gap to centralized: {100 * (central - accs[-1]):.1f} points; "
              f"gain over the best single client: {100 * (accs[-1] - max(local)):.1f} points")
        print(f"ACCURACY federated={accs[-1]:.3f} centralized={central:.3f} best_local={max(local):.3f}", flush=True)
        if args.keep:
            print(f"\nDashboard: {stack.url}/  (paste the admin token from {Path(args.state_dir) / 'admin-token'})")
            print("--keep: the stack stays up; press Ctrl-C to stop.", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        else:
                print("\nLocal mode stops now. To browse these rounds in the dashboard, run the demo with --keep "
                  "(`make demo ARGS=--keep`): it prints the dashboard's URL and stays up.", flush=True)
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
        stack.stop()
