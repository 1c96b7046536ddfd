"""The fanout state machine (issue 14): its shape on the template (moto cannot run Lambda
tasks), least privilege, the alarm on failed executions and the partials lifecycle rule."""

from __future__ import annotations

import json

import pytest
from conftest import functions_by_handler, resources
from test_functions import actions_on, policy_statements


@pytest.fixture(scope="module")
def dev(synth):
    return synth.dev


def _definition(template: dict) -> dict:
    """The ASL, every CloudFormation token (ARNs, the bucket name) replaced by "TOKEN"."""
    [machine] = resources(template, "AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))


def test_the_state_machine_loops_reduce_and_a_distributed_map_with_a_catch_to_the_failure_path(dev):
    asl = _definition(dev)
    states = asl["States"]
    assert asl["StartAt"] == "Start"
    assert set(states) >= {"Start", "Started?", "Where", "Init", "Reduce", "NeedsMap?", "Map", "FailRound", "Failed",
                           "Done"}
    assert states["Start"]["Parameters"]["owner.$"] == "$$.Execution.Name"
    assert states["Reduce"]["Parameters"]["complete.$"] == "$.reduce.next_complete"
    assert states["Reduce"]["Parameters"]["spent.$"] == "$.reduce.spent"
    assert states["NeedsMap?"]["Choices"][0] == {"Variable": "$.reduce.status", "StringEquals": "map", "Next": "Map"}
    pieces = states["Map"]
    assert pieces["Type"] == "Map" and pieces["Next"] == "Reduce"
    assert pieces["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert pieces["ItemReader"]["Resource"] == "arn:TOKEN:states:::s3:getObject"
    assert pieces["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert pieces["ItemReader"]["Parameters"]["Key.$"] == "$.reduce.items_key"
    assert pieces["ItemReader"]["Parameters"]["Bucket.$"] == "$.items.bucket"
    assert pieces["MaxConcurrency"] == 1000 and pieces.get("ToleratedFailurePercentage", 0) == 0
    child = pieces["ItemProcessor"]["States"]["Piece"]
    retry = next(r for r in child["Retry"] if r["ErrorEquals"] == ["States.ALL"])
    assert retry["MaxAttempts"] == 3 and retry["BackoffRate"] == 2 and retry["JitterStrategy"] == "FULL"
    for name in ("Start", "Reduce", "Map"):
        [catch] = states[name]["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "FailRound"}
    assert states["FailRound"]["Parameters"] == {"task": "fail", "experiment_id.$": "$.experiment_id",
                                                 "round.$": "$.round", "error.$": "$.error"}
    assert states["FailRound"]["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"


def test_the_state_machine_logs_traces_and_invokes_only_its_two_functions(dev):
    [machine] = resources(dev, "AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    role = props["RoleArn"]["Fn::GetAtt"][0]
    statements = [st for p in resources(dev, "AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"]
                  for st in p["Properties"]["PolicyDocument"]["Statement"]]
    fns = functions_by_handler(dev)
    logical = {name: next(k for k, v in dev["Resources"].items() if v is fns[name]) for name in fns}
    invoked = {json.dumps(st["Resource"]) for st in statements if st["Action"] == "lambda:InvokeFunction"}
    assert invoked and all(logical["aggregate"] in r or logical["aggregate_piece"] in r for r in invoked)
    s3 = [st for st in statements if "s3:" in json.dumps(st["Action"])]
    assert [st["Action"] for st in s3] == ["s3:GetObject"]  # the item lists, nothing else
    assert json.dumps(s3[0]["Resource"]).endswith('/partials/*"]]}') or "/partials/*" in json.dumps(s3[0]["Resource"])


def test_the_piece_function_writes_only_partials_and_holds_no_key(dev):
    fns = functions_by_handler(dev)
    statements = policy_statements(dev, fns["aggregate_piece"])
    assert actions_on(statements, "/partials/*") == {"s3:GetObject", "s3:PutObject"}
    assert actions_on(statements, "/models/*") == {"s3:GetObject", "s3:GetObjectVersion"}
    assert actions_on(statements, "/updates/*") == {"s3:GetObject", "s3:GetObjectVersion"}
    table = [st for st in statements if "dynamodb" in json.dumps(st["Action"])]
    assert [set(st["Action"]) for st in table] == [{"dynamodb:GetItem", "dynamodb:Query"}]
    assert "secretsmanager" not in json.dumps(statements)


def test_ingest_and_the_sweeper_may_start_executions_and_know_the_thresholds(dev):
    fns = functions_by_handler(dev)
    [machine] = resources(dev, "AWS::StepFunctions::StateMachine")
    for name in ("ingest", "sweeper"):
        env = fns[name]["Properties"]["Environment"]["Variables"]
        assert env["FMA_FANOUT_STATE_MACHINE"] == {"Ref": machine}
        assert env["FMA_FANOUT_MIN_UPDATES"] == "2000" and env["FMA_FANOUT_MIN_BYTES"] == str(4 * 1024**3)
        assert env["FMA_FANOUT_SINGLE_MAX_MODEL_BYTES"] == str(688 * 1024**2)
        starts = [st for st in policy_statements(dev, fns[name]) if st["Action"] == "states:StartExecution"]
        assert starts == [{"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": machine}}]
    for name in ("api", "authorizer", "aggregate", "aggregate_piece"):
        assert "states:StartExecution" not in json.dumps(policy_statements(dev, fns[name])), name


def test_failed_and_timed_out_executions_raise_alarms(dev):
    alarms = [a["Properties"] for a in resources(dev, "AWS::CloudWatch::Alarm").values()]
    by_metric = {a.get("MetricName"): a for a in alarms if a.get("Namespace") == "AWS/States"}
    assert set(by_metric) == {"ExecutionsFailed", "ExecutionsTimedOut"}
    assert by_metric["ExecutionsFailed"]["Threshold"] == 1


def test_partials_expire_by_lifecycle_rule(dev):
    buckets = resources(dev, "AWS::S3::Bucket").values()
    rules = [r for b in buckets for r in b["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])]
    [rule] = [r for r in rules if r.get("Id") == "expire-partials"]
    assert rule["Prefix"] == "partials/" and rule["ExpirationInDays"] == 1 and rule["Status"] == "Enabled"
