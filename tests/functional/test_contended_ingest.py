"""Issue 13 item 2: ingest's writes, throttled or conflicted, are retried inside the invocation
with bounded jittered backoff, and after that budget the record goes back to SQS within seconds.

DynamoDB's errors are injected on the wire in front of moto (wire_faults), so botocore's own
retries (throttling, 5xx) and FMA's (transactions cancelled by contention, single writes that
met a transaction: fma.adapters.dynamo_retry) run for real. Sleeps and jitter are injected.
"""

from __future__ import annotations

import itertools
import time
import types

import boto3
import botocore.endpoint
import pytest
from harness import BUCKET, update_bytes
from hostile import model, update_key, world
from sqs_batches import VisibilitySpy, ingest_queue, receive_batch, send_object_created
from wire_faults import WireFaults

from fma.adapters import dynamo_retry
from fma.adapters.dynamo_retry import RetryPolicy
from fma.local import dispatch
from fma.local.events import FakeContext, sqs_s3_event

ACCEPT = b'"ACCEPTED"'  # in the accept transaction's request, nowhere else
REJECT = b'"REJECTED"'
SEAL = b'"SEALED"'


@pytest.fixture
def sleeps(monkeypatch):
    """FMA's retry policy with recorded sleeps and jitter drawn 0, 1, 0, 1 ... (bottom, top)."""
    recorded: list[float] = []
    jitter = itertools.cycle([0.0, 1.0])
    monkeypatch.setattr(dynamo_retry, "POLICY", RetryPolicy(sleep=recorded.append, rng=lambda: next(jitter)))
    return recorded


@pytest.fixture
def botocore_sleeps(monkeypatch):
    """botocore's retry sleeps, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=recorded.append, time=time.time))
    return recorded


@pytest.fixture
def faults(monkeypatch):
    return WireFaults(monkeypatch)


def _uploaded(stack, min_updates: int = 2, data: bytes | None = None):
    dev, exp_id, clients = world(stack, clients=2, rounds={"min_updates": min_updates, "total_rounds": 2})
    client_id, token = clients[0]
    assert stack.submit(exp_id, 1, token, data or update_bytes(model(), 5, 1)).status == 202
    return dev, exp_id, client_id, update_key(exp_id, 1, client_id)


def _state(stack, dev: str, exp_id: str, client_id: str) -> tuple:
    rnd = stack.round(dev, exp_id, 1)
    [upd] = [u for u in rnd["updates"] if u["client_id"] == client_id] or [{"status": None}]
    return rnd["state"], rnd["accepted"], rnd["rejected"], upd["status"]


def test_an_accept_conflicted_three_times_succeeds_in_the_invocation_and_counts_once(stack, faults, sleeps):
    dev, exp_id, client_id, key = _uploaded(stack)
    conflict = faults.fail("TransactWriteItems", 3, "TransactionCanceledException", contains=ACCEPT,
                           reasons=["TransactionConflict", None])

    assert stack.deliver(key) == {"batchItemFailures": []}

    assert conflict.hits == 3
    assert sleeps == [0.025, 0.1, 0.1]  # 50, 100, 200 ms steps, jitter at the bottom, top, bottom
    assert _state(stack, dev, exp_id, client_id) == ("OPEN", 1, 0, "ACCEPTED")
    assert stack.deliver(key) == {"batchItemFailures": []}  # S3's duplicate event changes nothing
    assert _state(stack, dev, exp_id, client_id) == ("OPEN", 1, 0, "ACCEPTED")


@pytest.mark.parametrize("reason", ["ThrottlingError", "ProvisionedThroughputExceeded"])
def test_a_transaction_throttled_on_one_item_is_retried_by_fma(stack, faults, sleeps, reason):
    dev, exp_id, client_id, key = _uploaded(stack)
    throttled = faults.fail("TransactWriteItems", 2, "TransactionCanceledException", contains=ACCEPT,
                            reasons=[None, reason])

    assert stack.deliver(key) == {"batchItemFailures": []}

    assert throttled.hits == 2 and len(sleeps) == 2
    assert _state(stack, dev, exp_id, client_id) == ("OPEN", 1, 0, "ACCEPTED")


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException",
                                  "RequestLimitExceeded"])
def test_a_throttled_request_is_retried_by_botocore_a_bounded_number_of_times(stack, faults, sleeps,
                                                                              botocore_sleeps, code):
    dev, exp_id, client_id, key = _uploaded(stack)
    throttled = faults.fail("TransactWriteItems", dynamo_retry.CLIENT_MAX_RETRIES, code, contains=ACCEPT)

    assert stack.deliver(key) == {"batchItemFailures": []}

    assert throttled.hits == dynamo_retry.CLIENT_MAX_RETRIES and sleeps == []  # botocore's own retries
    assert len(botocore_sleeps) == dynamo_retry.CLIENT_MAX_RETRIES
    assert all(0 <= s <= 2**i for i, s in enumerate(botocore_sleeps))  # rand(0, 1) x 1, 2, 4 s
    assert _state(stack, dev, exp_id, client_id) == ("OPEN", 1, 0, "ACCEPTED")


def test_an_update_read_answered_with_s3_slowdown_is_retried_by_botocore(stack, faults, botocore_sleeps):
    dev, exp_id, client_id, key = _uploaded(stack)
    slow = faults.fail_s3("GET", key, 2)  # 503 SlowDown on the first two reads of the update

    assert stack.deliver(key) == {"batchItemFailures": []}

    assert slow.hits == 2 and len(botocore_sleeps) == 2
    assert all(0 <= s <= 2**i for i, s in enumerate(botocore_sleeps))
    assert _state(stack, dev, exp_id, client_id) == ("OPEN", 1, 0, "ACCEPTED")


def test_an_accept_whose_answer_was_lost_is_retried_to_the_same_result(stack, faults, botocore_sleeps):
    dev, exp_id, client_id, key = _uploaded(stack, min_updates=1)
    # the transaction is applied, then DynamoDB's answer is a 500: botocore sends it again
    lost = faults.fail("TransactWriteItems", 1, "InternalServerError", status=500, contains=ACCEPT,
                       after_apply=True)

    assert stack.deliver(key) == {"batchItemFailures": []}

    assert lost.hits == 1 and len(botocore_sleeps) == 1
    assert faults.requests.count("TransactWriteItems") >= 2  # the retry reached DynamoDB and was refused
    # counted once, sealed once, one aggregation
    assert _state(stack, dev, exp_id, client_id) == ("SEALED", 1, 0, "ACCEPTED")
    assert stack.invoker.calls == [{"experiment_id": exp_id, "round": 1}]


def test_a_seal_that_meets_a_transaction_is_retried_and_seals_once(stack, faults, sleeps):
    dev, exp_id, client_id, key = _uploaded(stack, min_updates=1)
    conflict = faults.fail("UpdateItem", 2, "TransactionConflictException", contains=SEAL)

    assert stack.deliver(key) == {"batchItemFailures": []}

    assert conflict.hits == 2 and len(sleeps) == 2
    assert _state(stack, dev, exp_id, client_id) == ("SEALED", 1, 0, "ACCEPTED")
    assert stack.invoker.calls == [{"experiment_id": exp_id, "round": 1}]


def test_a_conflicted_reject_fails_its_record_instead_of_passing_for_done(stack, faults, sleeps):
    bad = update_bytes({"w": model()["w"]}, 5, 1)  # a tensor missing: REJECTED
    dev, exp_id, client_id, key = _uploaded(stack, data=bad)
    faults.fail("TransactWriteItems", 1000, "TransactionCanceledException", contains=REJECT,
                reasons=["TransactionConflict", None])

    assert len(stack.deliver(key)["batchItemFailures"]) == 1
    assert _state(stack, dev, exp_id, client_id) == ("OPEN", 0, 0, "UPLOADING")

    faults.rules.clear()
    assert stack.deliver(key) == {"batchItemFailures": []}
    assert _state(stack, dev, exp_id, client_id) == ("OPEN", 0, 1, "REJECTED")


def _run_batch(sqs, url: str, arn: str) -> list[str]:
    """Receive what is visible, deliver it as Lambda's event source does, delete what succeeded."""
    event, messages = receive_batch(sqs, url, arn)
    failed = {f["itemIdentifier"] for f in dispatch.run_ingest_event(event)["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        else:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return sorted(failed)


def test_after_the_budget_the_record_returns_within_seconds_with_nothing_half_written(stack, faults, sleeps,
                                                                                       monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fma-dev-ingest")  # as on Lambda: SQS is reachable
    dispatch.reset_handler_caches()
    dev, exp_id, client_id, key = _uploaded(stack)
    sqs = boto3.client("sqs", region_name="us-east-1")
    url, arn = ingest_queue(sqs)
    send_object_created(sqs, url, key)
    spy = VisibilitySpy(sqs)
    dispatch.load_handler_module("ingest").visibility()._client = spy
    conflict = faults.fail("TransactWriteItems", 1000, "TransactionCanceledException", contains=ACCEPT,
                           reasons=["TransactionConflict", None])

    # every attempt conflicts: the budget is spent, then the record is returned for retry
    assert len(_run_batch(sqs, url, arn)) == 1
    policy = dynamo_retry.POLICY
    assert conflict.hits == policy.attempts == 6
    assert len(sleeps) == policy.attempts - 1 and sum(sleeps) <= policy.max_total_sleep == pytest.approx(1.55)
    assert 1 <= spy.changes[-1] <= 2  # back within 2 seconds, not the queue's 720 s
    assert _state(stack, dev, exp_id, client_id) == ("OPEN", 0, 0, "UPLOADING")  # nothing half-written

    # the conflict is over: the redelivered record is accepted, once
    faults.rules.clear()
    assert _run_batch(sqs, url, arn) == []
    assert _state(stack, dev, exp_id, client_id) == ("OPEN", 1, 0, "ACCEPTED")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


class ShrinkingContext(FakeContext):
    """A Lambda context whose remaining time the test sets (no clock involved)."""

    remaining_ms = 120_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_records_a_slow_batch_has_no_time_left_for_go_back_within_a_second_uncounted(stack, monkeypatch):
    dev, exp_id, clients = world(stack, clients=2, rounds={"min_updates": 2, "total_rounds": 2})
    keys = []
    for client_id, token in clients:
        assert stack.submit(exp_id, 1, token, update_bytes(model(), 5, 1)).status == 202
        keys.append(update_key(exp_id, 1, client_id))
    ingest = dispatch.load_handler_module("ingest")
    context, delays, original = ShrinkingContext("ingest"), [], ingest.ingest_key

    def slow_ingest(key):  # the first record takes the invocation down to 20 of its 120 s
        outcome = original(key)
        context.remaining_ms = 20_000
        return outcome

    monkeypatch.setattr(ingest, "ingest_key", slow_ingest)
    monkeypatch.setattr(ingest.visibility(), "delay", lambda _arn, _handle, seconds: delays.append(seconds))
    event = sqs_s3_event(BUCKET, keys)

    result = ingest.handler(event, context)

    # the second record was not started (20 s < a quarter of 120 s): back in 1 s, its attempt uncounted
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert delays == [1]
    second = stack.deps.repo.get_update(exp_id, 1, clients[1][0])
    assert second.status == "UPLOADING" and not second.reason
    assert stack.round(dev, exp_id, 1)["accepted"] == 1
    context.remaining_ms = 120_000
    assert ingest.handler(sqs_s3_event(BUCKET, keys[1:]), context) == {"batchItemFailures": []}
    assert stack.round(dev, exp_id, 1)["state"] == "SEALED"
