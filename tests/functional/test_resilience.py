"""One item that fails for a reason that is not the client's never holds up any other item.

Ingest: the failed SQS record comes back within seconds (its visibility is shortened with
jittered exponential backoff), and after FMA_MAX_INGEST_ATTEMPTS its update is FAILED and the
message acknowledged. The sweeper: a failing due item is pushed back and, after the same bound,
FAILED, while the uploads of every other experiment are reconciled in the same pass.
"""

from __future__ import annotations

import boto3
import numpy as np
from harness import update_bytes
from sqs_batches import VisibilitySpy, ingest_queue, receive_batch, send_object_created

from fma.domain.auth import Role
from fma.local import dispatch

MODEL = {"w": np.ones(3, np.float32)}


class PoisonStore:
    """Forwards to the real store but raises (a fault, not the client's bytes) for one key."""

    def __init__(self, inner, poison_key: str):
        self.inner, self.poison_key = inner, poison_key

    def __getattr__(self, name):
        attr = getattr(self.inner, name)

        def call(*args, **kwargs):
            if args and args[0] == self.poison_key:
                raise RuntimeError("simulated S3 fault on this object")
            return attr(*args, **kwargs)

        return call if callable(attr) else attr


def _two_experiments(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_a = stack.create_experiment(dev, MODEL, rounds={"min_updates": 2, "total_rounds": 1})
    exp_b = stack.create_experiment(dev, MODEL, rounds={"min_updates": 1, "total_rounds": 1})
    clients_a, clients_b = stack.enroll(dev, exp_a, 2), stack.enroll(dev, exp_b, 1)
    for exp_id, (_cid, token) in [(exp_a, clients_a[0]), (exp_a, clients_a[1]), (exp_b, clients_b[0])]:
        assert stack.submit(exp_id, 1, token, update_bytes(MODEL, 4, 1)).status == 202
    keys = {name: f"updates/{exp}/00000001/{cid}.safetensors"
            for name, exp, (cid, _t) in [("poison", exp_a, clients_a[0]), ("good_a", exp_a, clients_a[1]),
                                         ("good_b", exp_b, clients_b[0])]}
    return dev, exp_a, exp_b, clients_a, keys


def _run_batch(sqs, url: str, arn: str) -> tuple[list[str], dict[str, str]]:
    """Deliver what is visible, then delete what succeeded (as Lambda does); -> failed ids, bodies."""
    event, messages = receive_batch(sqs, url, arn)
    result = dispatch.run_ingest_event(event)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return sorted(failed), {m["MessageId"]: m["ReceiptHandle"] for m in messages}


def test_poison_record_retries_within_seconds_then_fails_without_delaying_any_other(stack, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fma-dev-ingest")  # as on Lambda: SQS is reachable
    dispatch.reset_handler_caches()
    dev, exp_a, exp_b, clients_a, keys = _two_experiments(stack)
    sqs = boto3.client("sqs", region_name="us-east-1")
    url, arn = ingest_queue(sqs)
    ids = {name: send_object_created(sqs, url, key) for name, key in keys.items()}
    ingest = dispatch.load_handler_module("ingest")
    ingest.deps().store = PoisonStore(ingest.deps().store, keys["poison"])
    spy = VisibilitySpy(sqs)
    ingest.visibility()._client = spy

    # When one batch mixes the poison record with good records of two experiments
    failed, handles = _run_batch(sqs, url, arn)
    # Then only the poison is returned for retry, due again within 2 seconds, and the others landed
    assert failed == [ids["poison"]]
    assert 1 <= spy.changes[0] <= 2
    assert stack.round(dev, exp_b, 1)["state"] == "SEALED"
    rnd_a = stack.round(dev, exp_a, 1)
    assert (rnd_a["accepted"], rnd_a["rejected"], rnd_a["state"]) == (1, 0, "OPEN")
    assert stack.invoker.calls == [{"experiment_id": exp_b, "round": 1}]
    assert [r["status"] for r in stack.run_aggregations()] == ["published"]  # B publishes meanwhile
    assert stack.round(dev, exp_b, 1)["state"] == "PUBLISHED"

    # Each redelivery backs off further (2, 4, 8 s with jitter) until the bound is reached
    for attempt in (2, 3):
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handles[ids["poison"]], VisibilityTimeout=0)
        failed, handles = _run_batch(sqs, url, arn)
        assert failed == [ids["poison"]]
        assert 2 ** (attempt - 1) <= spy.changes[-1] <= 2**attempt
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handles[ids["poison"]], VisibilityTimeout=0)
    failed, _ = _run_batch(sqs, url, arn)

    # At the fourth attempt the update is FAILED with its reason and the message acknowledged
    assert failed == []
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    rnd_a = stack.round(dev, exp_a, 1)
    [poisoned] = [u for u in rnd_a["updates"] if u["client_id"] == clients_a[0][0]]
    assert poisoned["status"] == "FAILED"
    assert poisoned["reason"].startswith("INGEST_FAILED: 4 attempts failed; last error RuntimeError: simulated")
    assert (rnd_a["accepted"], rnd_a["rejected"], rnd_a["state"]) == (1, 0, "OPEN")
    # and the client may send its update again
    ingest.deps().store = ingest.deps().store.inner
    assert stack.submit(exp_a, 1, clients_a[0][1], update_bytes(MODEL, 4, 1)).status == 202
    stack.deliver(keys["poison"])
    assert stack.round(dev, exp_a, 1)["state"] == "SEALED"


def test_poison_upload_first_in_the_due_index_does_not_stall_other_reconciliation(stack):
    # Given two lost S3 events: the poison one of experiment A is first in the due index
    dev, exp_a, exp_b, clients_a, keys = _two_experiments(stack)
    stack.deliver(keys["good_a"])
    sweeper = dispatch.load_handler_module("sweeper")
    due = sweeper.deps().repo.list_due_uploads(2e10)
    assert [f"updates/{u.experiment_id}/{u.round:08d}/{u.client_id}.safetensors" for u in due] == [
        keys["poison"], keys["good_b"]]
    sweeper.deps().store = PoisonStore(sweeper.deps().store, keys["poison"])

    # When the sweeper runs once
    report = stack.sweep(advance=301)
    # Then the other experiment's upload is reconciled in that same pass; the poison is pushed back
    assert report["reconciled"] == [f"{exp_b}/1/{keys['good_b'].split('/')[-1].removesuffix('.safetensors')}"
                                    ":accepted"]
    assert [e.split(":")[0] for e in report["errors"]] == [f"{exp_a}/1/{clients_a[0][0]}"]
    assert stack.round(dev, exp_b, 1)["state"] == "SEALED"
    assert [r["status"] for r in stack.run_aggregations(advance=301)] == ["published"]
    assert stack.sweep(advance=302)["errors"] == []  # its next look is backed off, not every pass

    # After the bounded attempts the poison upload is FAILED with a reason and leaves the index
    reports = [stack.sweep(advance=301 + 7200 * k) for k in range(1, 4)]
    assert reports[-1]["failed_updates"] == [f"{exp_a}/1/{clients_a[0][0]}"]
    [poisoned] = [u for u in stack.round(dev, exp_a, 1)["updates"] if u["client_id"] == clients_a[0][0]]
    assert poisoned["status"] == "FAILED" and poisoned["reason"].startswith("INGEST_FAILED: 4 attempts")
    assert sweeper.deps().repo.list_due_uploads(2e10) == []
    assert stack.round(dev, exp_a, 1)["accepted"] == 1


class PoisonRepo:
    """Forwards to the real repository but raises on reading one experiment."""

    def __init__(self, inner, poison_experiment: str):
        self.inner, self.poison = inner, poison_experiment

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name != "get_experiment":
            return attr

        def get_experiment(experiment_id):
            if experiment_id == self.poison:
                raise RuntimeError("simulated DynamoDB fault on this experiment")
            return attr(experiment_id)

        return get_experiment


def test_failing_due_round_is_pushed_back_and_never_stalls_other_deadlines(stack):
    dev = stack.token(Role.DEVELOPER)
    rounds = {"min_updates": 2, "total_rounds": 1, "deadline_seconds": 60, "min_updates_at_deadline": 1}
    exp_a = stack.create_experiment(dev, MODEL, rounds=rounds)
    exp_b = stack.create_experiment(dev, MODEL, rounds=rounds)
    for exp_id in (exp_a, exp_b):
        [(cid, token)] = stack.enroll(dev, exp_id, 1)
        assert stack.submit(exp_id, 1, token, update_bytes(MODEL, 4, 1)).status == 202
        stack.deliver(f"updates/{exp_id}/00000001/{cid}.safetensors")
    sweeper = dispatch.load_handler_module("sweeper")
    real_repo = sweeper.deps().repo
    sweeper.deps().repo = PoisonRepo(real_repo, exp_a)  # exp_a's round is first in the due index
    report = stack.sweep(advance=61)
    assert report["sealed"] == [f"{exp_b}/1"]
    assert [e.split(":")[0] for e in report["errors"]] == [f"{exp_a}/1"]
    assert stack.round(dev, exp_a, 1)["state"] == "OPEN"
    # pushed back, then FAILED with a reason after the bounded attempts
    reports = [stack.sweep(advance=61 + 7200 * k) for k in range(1, 4)]
    assert reports[-1]["failed"] == [f"{exp_a}/1"]
    sweeper.deps().repo = real_repo
    rnd = stack.round(dev, exp_a, 1)
    assert rnd["state"] == "FAILED" and rnd["reason"].startswith("SWEEP_FAILED: 4 sweeps failed; last error Runtime")
