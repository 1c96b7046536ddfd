"""Ingestion, aggregation and the sweeper: notifications, queues, retries, schedule."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match
from conftest import PROD_INGEST_MAX_CONCURRENCY, functions_by_handler, resources

from infra.config import Config


def _logical(template: dict, resource: dict) -> str:
    return next(k for k, v in template["Resources"].items() if v is resource)


def test_object_created_on_updates_and_models_goes_to_the_queue(synth):
    notifications = next(iter(resources(synth.dev, "Custom::S3BucketNotifications").values()))
    configs = notifications["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    filters = sorted(tuple(sorted((r["Name"], r["Value"]) for r in c["Filter"]["Key"]["FilterRules"])) for c in configs)
    assert filters == [
        (("prefix", "models/"), ("suffix", ".safetensors")),
        (("prefix", "updates/"), ("suffix", ".safetensors")),
    ]
    assert all(c["Events"] == ["s3:ObjectCreated:*"] for c in configs)
    queue = configs[0]["QueueArn"]["Fn::GetAtt"][0]
    assert queue.startswith("IngestionObjectCreated")


def test_queue_redrives_to_a_dead_letter_queue_and_outlives_the_consumer(synth):
    queue = next(
        v for k, v in resources(synth.dev, "AWS::SQS::Queue").items() if k.startswith("IngestionObjectCreated")
    )
    props = queue["Properties"]
    assert props["RedrivePolicy"]["maxReceiveCount"] == 5
    assert props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0].startswith("IngestionDeadLetters")
    ingest = functions_by_handler(synth.dev)["ingest"]["Properties"]
    assert props["VisibilityTimeout"] >= 6 * ingest["Timeout"]
    for q in resources(synth.dev, "AWS::SQS::Queue").values():
        assert q["Properties"]["SqsManagedSseEnabled"] is True


def test_ingest_consumes_batches_and_reports_item_failures(synth):
    mapping = next(iter(resources(synth.dev, "AWS::Lambda::EventSourceMapping").values()))
    props = mapping["Properties"]
    ingest = _logical(synth.dev, functions_by_handler(synth.dev)["ingest"])
    assert props["FunctionName"] == {"Ref": ingest}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == 10


def test_ingest_concurrency_is_bounded_by_the_configured_maximum(synth):
    # dev keeps the default, prod's config sets another value: both reach the event source mapping
    for stage, expected in (("dev", Config().ingest_max_concurrency), ("prod", PROD_INGEST_MAX_CONCURRENCY)):
        template = synth.template(stage)
        template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
        template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": expected},
            "EventSourceArn": {"Fn::GetAtt": [Match.string_like_regexp("^IngestionObjectCreated"), "Arn"]},
        })
    assert Config().ingest_max_concurrency == 50


def test_aggregate_runs_async_with_retries_and_an_on_failure_queue(synth):
    config = next(iter(resources(synth.dev, "AWS::Lambda::EventInvokeConfig").values()))
    props = config["Properties"]
    aggregate = functions_by_handler(synth.dev)["aggregate"]
    assert props["FunctionName"] == {"Ref": _logical(synth.dev, aggregate)}
    assert props["MaximumRetryAttempts"] == 2
    target = props["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert target.startswith("AggregationFailedInvocations")
    assert aggregate["Properties"]["Timeout"] == 900
    assert aggregate["Properties"]["MemorySize"] == 3008
    env = aggregate["Properties"]["Environment"]["Variables"]
    assert env["FMA_LEASE_SECONDS"] == "960"


def test_ingest_and_sweeper_name_the_aggregate_function(synth):
    fns = functions_by_handler(synth.dev)
    aggregate = {"Ref": _logical(synth.dev, fns["aggregate"])}
    for name in ("ingest", "sweeper"):
        env = fns[name]["Properties"]["Environment"]["Variables"]
        assert env["FMA_AGGREGATE_FUNCTION"] == aggregate


def test_sweeper_runs_every_minute(synth):
    rule = next(iter(resources(synth.dev, "AWS::Events::Rule").values()))
    sweeper = _logical(synth.dev, functions_by_handler(synth.dev)["sweeper"])
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert rule["Properties"]["State"] == "ENABLED"
    assert json.dumps(rule["Properties"]["Targets"]).count(sweeper) == 1


def test_queue_policy_admits_s3_only_from_this_bucket_and_account(synth):
    policies = [
        p for p in resources(synth.dev, "AWS::SQS::QueuePolicy").values()
        if any(q["Ref"].startswith("IngestionObjectCreated") for q in p["Properties"]["Queues"])
    ]
    [policy] = policies
    allows = [st for st in policy["Properties"]["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    [s3_send] = [st for st in allows if st.get("Principal") == {"Service": "s3.amazonaws.com"}]
    assert s3_send["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    bucket = s3_send["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::GetAtt"][0]
    assert bucket.startswith("StorageModels")
    assert len(allows) == 1  # no other principal may send to the queue


def test_ingest_may_shorten_the_visibility_of_its_own_queue_only(synth):
    from test_functions import policy_statements

    ingest = functions_by_handler(synth.dev)["ingest"]
    statements = [st for st in policy_statements(synth.dev, ingest) if "sqs:ChangeMessageVisibility" in
                  (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
    # the event source mapping's consume grant carries it, on exactly the object-created queue
    assert {st["Resource"]["Fn::GetAtt"][0][: len("IngestionObjectCreated")] for st in statements} == {
        "IngestionObjectCreated"}
    assert all(not st["Resource"]["Fn::GetAtt"][0].startswith("IngestionDeadLetters") for st in statements)
    for name, fn in functions_by_handler(synth.dev).items():
        if name != "ingest":
            assert "sqs:ChangeMessageVisibility" not in json.dumps(policy_statements(synth.dev, fn)), name
