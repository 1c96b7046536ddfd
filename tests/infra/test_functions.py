"""Lambda functions: runtime, architecture, layer, environment and least privilege."""

from __future__ import annotations

import json

import pytest
from conftest import STRATEGY_MODULES, functions_by_handler, resources

FUNCTIONS = ("api", "authorizer", "ingest", "aggregate", "aggregate_piece", "sweeper")
FANOUT_START_ENV = {"FMA_FANOUT_STATE_MACHINE", "FMA_FANOUT_MIN_UPDATES", "FMA_FANOUT_MIN_BYTES",
                    "FMA_FANOUT_SINGLE_MAX_MODEL_BYTES"}
COMMON_ENV = {"FMA_TABLE_NAME", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"}
METRICS_ENV = {"POWERTOOLS_METRICS_NAMESPACE"}
EXPECTED_ENV = {
    "api": {
        "FMA_BUCKET_NAME",
        "FMA_POINTER_BASE_URL",
        "FMA_PRESIGN_SECONDS",
        "FMA_DIRECT_UPLOAD_MAX_BYTES",
        "FMA_MAX_UPDATE_BYTES",
        "FMA_MULTIPART_THRESHOLD_BYTES",
        "FMA_MULTIPART_PART_BYTES",
        "FMA_RECONCILE_GRACE_SECONDS",
        "FMA_POLL_RETRY_AFTER_SECONDS",
        "FMA_DEFAULT_EXPECTED_CLIENTS",
        "FMA_LEASE_SECONDS",
        "FMA_CORS_ORIGIN",
        "FMA_CLIENT_TOKEN_MAX_SECONDS",
        "FMA_CLIENT_TOKEN_GRACE_SECONDS",
    },
    "authorizer": {"FMA_CLIENT_TOKEN_GRACE_SECONDS"},
    "ingest": {
        "FMA_BUCKET_NAME",
        "FMA_AGGREGATE_FUNCTION",
        "FMA_LEASE_SECONDS",
        "FMA_RECONCILE_GRACE_SECONDS",
        "FMA_MAX_INGEST_ATTEMPTS",
        *FANOUT_START_ENV,
        *METRICS_ENV,
    },
    "aggregate": {"FMA_BUCKET_NAME", "FMA_LEASE_SECONDS", "FMA_DP_SECRET_ARN", "FMA_READ_CONCURRENCY", *METRICS_ENV},
    "aggregate_piece": {"FMA_BUCKET_NAME", "FMA_READ_CONCURRENCY"},
    "sweeper": {
        "FMA_BUCKET_NAME",
        "FMA_AGGREGATE_FUNCTION",
        "FMA_LEASE_SECONDS",
        "FMA_MAX_AGGREGATION_ATTEMPTS",
        "FMA_RECONCILE_GRACE_SECONDS",
        "FMA_MAX_INGEST_ATTEMPTS",
        *FANOUT_START_ENV,
        *METRICS_ENV,
    },
}
DATA_SERVICES = ("s3:", "dynamodb:")


def policy_statements(template: dict, function: dict) -> list[dict]:
    """Statements of every inline policy attached to the function's role."""
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions_on(statements: list[dict], fragment: str) -> set[str]:
    """Actions granted on any resource whose JSON mentions ``fragment``."""
    found = set()
    for st in statements:
        targets = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if any(fragment in json.dumps(t) for t in targets):
            found |= set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    return found


@pytest.fixture(scope="module")
def dev(synth):
    return synth.dev


def test_every_function_is_python312_arm64_with_the_layer(dev):
    fns = functions_by_handler(dev)
    assert sorted(fns) == sorted(FUNCTIONS)
    for name, fn in fns.items():
        props = fn["Properties"]
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == f"{name}.handler.handler"
        assert len(props["Layers"]) == 1
        assert props["TracingConfig"] == {"Mode": "Active"}


def test_function_environment_names_exactly_the_contract_variables(dev):
    for name, fn in functions_by_handler(dev).items():
        env = fn["Properties"]["Environment"]["Variables"]
        assert set(env) == COMMON_ENV | EXPECTED_ENV[name], name
        assert env.get("POWERTOOLS_METRICS_NAMESPACE", "FMA") == "FMA"
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_custom_strategy_modules_reach_only_api_and_aggregate(synth):
    for name, fn in functions_by_handler(synth.prod).items():
        env = fn["Properties"]["Environment"]["Variables"]
        expected = STRATEGY_MODULES if name in ("api", "aggregate", "aggregate_piece") else None
        assert env.get("FMA_STRATEGY_MODULES") == expected, name


def test_api_settings_carry_upload_limits_and_the_dashboard_origin(dev):
    env = functions_by_handler(dev)["api"]["Properties"]["Environment"]["Variables"]
    assert env["FMA_PRESIGN_SECONDS"] == "900"
    # 4 MiB: a larger raw body base64-encoded exceeds Lambda's 6 MB request limit.
    assert env["FMA_DIRECT_UPLOAD_MAX_BYTES"] == str(4 * 1024 * 1024)
    assert "DashboardDistribution" in json.dumps(env["FMA_CORS_ORIGIN"])
    sweeper = functions_by_handler(dev)["sweeper"]["Properties"]["Environment"]["Variables"]
    assert sweeper["FMA_MAX_AGGREGATION_ATTEMPTS"] == "3"
    assert sweeper["FMA_RECONCILE_GRACE_SECONDS"] == "300"


def test_each_function_has_its_own_role(dev):
    roles = [fn["Properties"]["Role"]["Fn::GetAtt"][0] for fn in functions_by_handler(dev).values()]
    assert len(set(roles)) == len(FUNCTIONS)
    for role in roles:
        assert "ManagedPolicyArns" not in dev["Resources"][role]["Properties"]


def test_no_data_action_is_granted_on_a_wildcard_resource(dev):
    for name, fn in functions_by_handler(dev).items():
        for st in policy_statements(dev, fn):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if any(a.startswith(DATA_SERVICES) for a in actions):
                assert st["Resource"] != "*", name
                assert all("*" not in a for a in actions), (name, actions)


def test_authorizer_can_only_get_items_from_the_table(dev):
    statements = policy_statements(dev, functions_by_handler(dev)["authorizer"])
    data = [st for st in statements if "xray" not in json.dumps(st) and "logs:" not in json.dumps(st)]
    assert len(data) == 1
    assert data[0]["Action"] == "dynamodb:GetItem"
    assert data[0]["Resource"] == {"Fn::GetAtt": [_table(dev), "Arn"]}


def test_api_may_presign_only_models_and_updates(dev):
    statements = policy_statements(dev, functions_by_handler(dev)["api"])
    multipart = {"s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"}
    assert actions_on(statements, "/models/*") == {"s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", *multipart}
    assert actions_on(statements, "/updates/*") == {"s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", *multipart}
    assert actions_on(statements, "/state/*") == set()
    uploads = [st for st in statements if st["Action"] == "s3:ListBucketMultipartUploads"]
    assert len(uploads) == 1 and "/*" not in json.dumps(uploads[0]["Resource"])  # the bucket, no object
    assert "dynamodb:Query" in actions_on(statements, "/index/experiments-all")
    assert "dynamodb:Query" in actions_on(statements, "/index/experiments-by-owner")
    assert "dynamodb:Scan" not in json.dumps(statements)


def test_ingest_reads_objects_and_invokes_only_aggregate(dev):
    fns = functions_by_handler(dev)
    statements = policy_statements(dev, fns["ingest"])
    assert actions_on(statements, "/updates/*") == {"s3:GetObject", "s3:GetObjectVersion"}
    assert actions_on(statements, "/models/*") == {"s3:GetObject", "s3:GetObjectVersion"}
    aggregate = _logical(dev, fns["aggregate"])
    invoke = [st for st in statements if st["Action"] == "lambda:InvokeFunction"]
    assert invoke == [
        {"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": {"Fn::GetAtt": [aggregate, "Arn"]}}
    ]


def test_aggregate_writes_only_models_state_and_partials(dev):
    statements = policy_statements(dev, functions_by_handler(dev)["aggregate"])
    assert actions_on(statements, "/updates/*") == {"s3:GetObject", "s3:GetObjectVersion"}
    assert actions_on(statements, "/models/*") == {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                                                   "s3:DeleteObjectVersion"}
    assert actions_on(statements, "/state/*") == {"s3:GetObject", "s3:PutObject", "s3:DeleteObjectVersion"}
    assert actions_on(statements, "/partials/*") == {"s3:GetObject", "s3:PutObject"}
    listing = [st for st in statements if st["Action"] == "s3:ListBucket"]
    assert listing[0]["Condition"] == {"StringLike": {"s3:prefix": ["state/*"]}}


def test_only_aggregate_reads_the_dp_noise_key(dev):
    [secret] = resources(dev, "AWS::SecretsManager::Secret")
    for name, fn in functions_by_handler(dev).items():
        granted = actions_on(policy_statements(dev, fn), secret)
        assert ("secretsmanager:GetSecretValue" in granted) == (name == "aggregate"), name
    env = functions_by_handler(dev)["aggregate"]["Properties"]["Environment"]["Variables"]
    assert env["FMA_DP_SECRET_ARN"] == {"Ref": secret}
    assert dev["Resources"][secret]["DeletionPolicy"] == "Retain"


def test_sweeper_lists_only_the_updates_prefix(dev):
    statements = policy_statements(dev, functions_by_handler(dev)["sweeper"])
    listing = [st for st in statements if st["Action"] == "s3:ListBucket"]
    assert listing[0]["Condition"] == {"StringLike": {"s3:prefix": ["updates/*"]}}
    assert actions_on(statements, "/updates/*") == {"s3:GetObject", "s3:GetObjectVersion", "s3:AbortMultipartUpload"}
    assert actions_on(statements, "/models/*") == {"s3:GetObject", "s3:GetObjectVersion"}
    assert "/index/due-rounds" in json.dumps(statements)


def test_each_function_logs_to_its_own_retained_group(dev):
    groups = resources(dev, "AWS::Logs::LogGroup")
    for fn in functions_by_handler(dev).values():
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group]["Properties"]["RetentionInDays"] == 30


def _table(template: dict) -> str:
    return next(iter(resources(template, "AWS::DynamoDB::Table")))


def _logical(template: dict, resource: dict) -> str:
    return next(k for k, v in template["Resources"].items() if v is resource)
