"""Issue 11: a poison upload (client bytes that used to raise in ingest) in one experiment does
not delay reconciliation or publication in another: it is REJECTED in the same pass, so it
neither fails its SQS record nor stays first in the sweeper's due index."""

from __future__ import annotations

import numpy as np
from harness import update_bytes
from hostile import model, nesting_bomb, raw_file, update_key, world

POISONS = [raw_file(nesting_bomb(100_000)),
           update_bytes(model(), 5, 1, extra={"fma.metrics": '{"loss": ' + "9" * 400 + "}"}),
           update_bytes(model(), 5, 1, extra={"fma.metrics": '{"loss": ' + "[" * 5000 + "]" * 5000 + "}"})]


def test_poison_uploads_in_one_experiment_do_not_delay_reconciliation_or_publication_in_another(stack):
    dev_a, exp_a, clients_a = world(stack, clients=len(POISONS), rounds={"min_updates": 1, "total_rounds": 2})
    dev_b, exp_b, clients_b = world(stack, clients=2, rounds={"min_updates": 2, "total_rounds": 2})
    # every S3 event is lost: the poisons, due first, and experiment B's good uploads behind them
    for (_cid, token), data in zip(clients_a, POISONS, strict=True):
        assert stack.submit(exp_a, 1, token, data).status == 202
    good = update_bytes({k: np.ones_like(v) for k, v in model().items()}, 3, 1)
    for _cid, token in clients_b:
        assert stack.submit(exp_b, 1, token, good).status == 202
    report = stack.sweep(advance=301)  # one pass reconciles all of them
    assert sorted(report["reconciled"]) == sorted(
        [f"{exp_a}/1/{cid}:rejected" for cid, _ in clients_a] + [f"{exp_b}/1/{cid}:accepted" for cid, _ in clients_b])
    assert [r["status"] for r in stack.run_aggregations()] == ["published"]
    assert stack.experiment(dev_b, exp_b)["model_version"] == 1
    rnd_a = stack.round(dev_a, exp_a, 1)
    assert rnd_a["state"] == "OPEN" and rnd_a["accepted"] == 0 and rnd_a["rejected"] == len(POISONS)
    assert {u["reason"].split(":")[0] for u in rnd_a["updates"]} == {"NOT_SAFETENSORS", "BAD_METRICS"}
    assert stack.sweep(advance=700)["reconciled"] == []  # nothing stays due


def test_poison_record_in_an_ingest_batch_fails_no_record_and_the_other_experiment_publishes(stack):
    _dev_a, exp_a, [(cid_a, token_a)] = world(stack, clients=1)
    dev_b, exp_b, clients_b = world(stack, clients=2, rounds={"min_updates": 2, "total_rounds": 2})
    assert stack.submit(exp_a, 1, token_a, POISONS[0]).status == 202
    for _cid, token in clients_b:
        assert stack.submit(exp_b, 1, token, update_bytes(model(), 3, 1)).status == 202
    keys = [update_key(exp_a, 1, cid_a)] + [update_key(exp_b, 1, cid) for cid, _ in clients_b]
    assert stack.deliver(*keys) == {"batchItemFailures": []}  # one SQS batch, poison first
    assert [r["status"] for r in stack.run_aggregations()] == ["published"]
    assert stack.experiment(dev_b, exp_b)["model_version"] == 1
    [poisoned] = stack.round(token_a, exp_a, 1)["updates"]
    assert poisoned["status"] == "REJECTED" and poisoned["reason"].startswith("NOT_SAFETENSORS:")
