"""Storage: the model bucket, its access-log bucket and the single DynamoDB table.

Layout and keys follow DESIGN sections 3 and 4. Exposes ``bucket``, ``access_logs``,
``table`` and the ARN helpers that other concerns use to grant by prefix or index.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import Config
from infra.constructs.function import acknowledge, logical_id, removal_policy

INDEX_KEYS = {
    "experiments-all": ("list_pk", "list_sk"),
    "experiments-by-owner": ("owner_pk", "list_sk"),
    "due-rounds": ("due_pk", "due_sk"),
}
TTL_ATTRIBUTE = "ttl"
# Item-level read/write; no Scan (no request path scans) and no table administration.
TABLE_READ_WRITE = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
)


def private_bucket_props(config: Config) -> dict:
    """Settings every FMA bucket shares: private, encrypted, TLS only."""
    destroy = not config.retain
    return {
        "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
        "encryption": s3.BucketEncryption.S3_MANAGED,
        "enforce_ssl": True,
        "minimum_tls_version": 1.2,
        "removal_policy": removal_policy(config),
        "auto_delete_objects": destroy,
    }


def object_lock_props(config: Config) -> dict:
    """Object Lock (issue 16): enabled at creation with the configured default retention, or nothing."""
    if config.object_lock is None:
        return {}
    retention = {"governance": s3.ObjectLockRetention.governance,
                 "compliance": s3.ObjectLockRetention.compliance}[config.object_lock]
    return {"object_lock_enabled": True,
            "object_lock_default_retention": retention(Duration.days(config.object_lock_days))}


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            **private_bucket_props(config),
            # CloudFront standard logging writes with ACLs; S3 server access logs use policy.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(config.access_log_retention_days),
                )
            ],
        )
        acknowledge(
            self.access_logs,
            {"AwsSolutions-S1": "This is the access-log bucket; logging it would recurse."},
        )
        self.bucket = s3.Bucket(
            self,
            "Models",
            **private_bucket_props(config),
            versioned=True,
            **object_lock_props(config),
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="models-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-updates",
                    prefix="updates/",
                    expiration=Duration.days(config.update_retention_days),
                ),
                s3.LifecycleRule(  # fanout rounds' partial sums: useless once the round is published
                    id="expire-partials",
                    prefix="partials/",
                    expiration=Duration.days(config.partials_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(config.noncurrent_version_days),
                ),
                s3.LifecycleRule(  # pointer objects are rewritten every round: old versions are noise
                    id="expire-pointer-versions",
                    prefix="pointers/",
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=config.retain,
            removal_policy=removal_policy(config),
        )
        for index, (pk, sk) in INDEX_KEYS.items():
            self.table.add_global_secondary_index(
                index_name=index,
                partition_key=dynamodb.Attribute(name=pk, type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name=sk, type=dynamodb.AttributeType.STRING),
                projection_type=dynamodb.ProjectionType.ALL,
            )

    def objects(self, *prefixes: str) -> list[str]:
        """Object ARNs under the given key prefixes (``"updates/"`` -> ``arn/updates/*``)."""
        return [self.bucket.arn_for_objects(f"{p}*") for p in prefixes]

    def grant_pointer_writes(self, fn: Any) -> None:
        """Every function that changes what a waiting client acts on rewrites the experiment's
        pointer object (fma.services.pointer): PutObject on `pointers/*` only."""
        fn.grant(["s3:PutObject"], self.objects("pointers/"))
        acknowledge(fn.role, {
            f"AwsSolutions-IAM5[Resource::<{logical_id(self.bucket)}.Arn>/pointers/*]": (
                "Scoped to the pointers/ prefix: one small object per experiment, rewritten on each change."
            ),
        })

    def index_arns(self, *indexes: str) -> list[str]:
        return [f"{self.table.table_arn}/index/{name}" for name in indexes]
