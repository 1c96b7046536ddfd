"""End to end: local mode runs the fanout plan (the state machine's tasks, pieces in worker
processes) and publishes, bit for bit, what the single plan publishes for the same updates."""

from __future__ import annotations

import numpy as np
import pytest
from local_mode import local_mode

from fma_client import Client, Developer

pytestmark = pytest.mark.e2e

TINY = {"plan": "fanout", "partition_updates": 2, "shard_bytes": 64 << 10}


def test_fanout_with_tiny_partitions_publishes_the_single_plans_bytes(tmp_path):
    rng = np.random.default_rng(3)
    initial = {"dense/kernel": rng.normal(size=(160, 128)).astype(np.float32),
               "dense/bias": np.zeros(128, np.float32)}
    updates = [({k: (v + rng.normal(size=v.shape) * 0.1).astype(np.float32) for k, v in initial.items()}, 5 + i)
               for i in range(5)]
    with local_mode(tmp_path / "state", timeout=90) as (url, admin):
        dev = Developer(url, admin)
        published = {}
        for strategy in ("fedavg", {"name": "krum", "params": {"num_malicious": 1}}):
            for plan in ({**TINY, "plan": "single"}, TINY):  # the same partitioning, either plan
                exp = dev.create_experiment("fanout", initial, strategy=strategy, aggregation=plan,
                                            rounds={"min_updates": 5, "total_rounds": 1})
                assert exp["aggregation"]["plan"] == plan["plan"]
                enroll = dev.enrollment_token(exp["id"], max_uses=5)["token"]
                clients = [Client(url, exp["id"], enrollment_token=enroll, persist_registration=False)
                           for _ in range(5)]
                for c in clients:
                    c.register()
                ranked = sorted(clients, key=lambda c: c.client_id)  # the same bytes in the same client-id order
                for (weights, n), c in zip(updates, ranked, strict=True):
                    c.submit(weights, num_examples=n, round=1)
                clients[0].wait_for_round(1, timeout=60)
                model = dev.download_model(exp["id"], 1)
                [rnd] = dev.rounds(exp["id"])
                assert rnd["state"] == "PUBLISHED" and rnd["plan"] == plan["plan"]  # really fanned out
                assert rnd["cost"]["usd_total"] > 0
                published[(str(strategy), plan["plan"])] = b"".join(model[k].tobytes() for k in sorted(model))
            assert published[(str(strategy), "single")] == published[(str(strategy), "fanout")], strategy
