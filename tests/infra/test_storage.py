"""Storage: the model bucket and the DynamoDB table, and what a stage keeps on delete."""

from __future__ import annotations

from aws_cdk.assertions import Match
from conftest import resources

BLOCK_ALL = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}


def _models_bucket(template: dict) -> dict:
    return next(v for k, v in resources(template, "AWS::S3::Bucket").items() if k.startswith("StorageModels"))


def test_table_has_the_single_table_keys_and_indexes(synth):
    synth.template("dev").has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
            "GlobalSecondaryIndexes": Match.array_with(
                [
                    {
                        "IndexName": "experiments-all",
                        "KeySchema": [
                            {"AttributeName": "list_pk", "KeyType": "HASH"},
                            {"AttributeName": "list_sk", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    },
                    {
                        "IndexName": "experiments-by-owner",
                        "KeySchema": [
                            {"AttributeName": "owner_pk", "KeyType": "HASH"},
                            {"AttributeName": "list_sk", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    },
                    {
                        "IndexName": "due-rounds",
                        "KeySchema": [
                            {"AttributeName": "due_pk", "KeyType": "HASH"},
                            {"AttributeName": "due_sk", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    },
                ]
            ),
        },
    )


def test_model_bucket_is_private_encrypted_versioned_and_logged(synth):
    props = _models_bucket(synth.dev)["Properties"]
    assert props["PublicAccessBlockConfiguration"] == BLOCK_ALL
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "models-bucket/"


def test_every_bucket_denies_plain_http(synth):
    for template in (synth.dev, synth.prod):
        buckets = resources(template, "AWS::S3::Bucket")
        policies = resources(template, "AWS::S3::BucketPolicy").values()
        secured = {p["Properties"]["Bucket"]["Ref"] for p in policies if '"aws:SecureTransport": "false"' in _json(p)}
        assert secured == set(buckets)
        for bucket in buckets.values():
            assert bucket["Properties"]["PublicAccessBlockConfiguration"] == BLOCK_ALL


def test_old_updates_and_versions_expire(synth):
    rules = {r["Id"]: r for r in _models_bucket(synth.dev)["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-updates"]["Prefix"] == "updates/"
    assert rules["expire-updates"]["ExpirationInDays"] == 30
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_dev_stage_leaves_nothing_behind(synth):
    for kind in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::Logs::LogGroup"):
        for name, res in resources(synth.dev, kind).items():
            assert res.get("DeletionPolicy") == "Delete", name
    assert len(resources(synth.dev, "Custom::S3AutoDeleteObjects")) == 3


def test_prod_stage_retains_data_and_logs(synth):
    for kind in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::Logs::LogGroup"):
        for name, res in resources(synth.prod, kind).items():
            assert res.get("DeletionPolicy") == "Retain", name
    assert not resources(synth.prod, "Custom::S3AutoDeleteObjects")
    table = next(iter(resources(synth.prod, "AWS::DynamoDB::Table").values()))
    assert table["Properties"]["DeletionProtectionEnabled"] is True


def _json(value: object) -> str:
    import json

    return json.dumps(value)
