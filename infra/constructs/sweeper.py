"""Sweeper: an EventBridge schedule runs the sweeper function every minute.

It enforces round deadlines (through the ``due-rounds`` index), reclaims stale aggregation
leases, retries aggregation up to ``max_aggregation_attempts`` and reconciles uploads whose
S3 event went missing (listing ``updates/`` after ``reconcile_grace_seconds``).
Exposes ``function`` and ``rule``.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from infra.config import Config
from infra.constructs.function import FmaFunction, FunctionKit, acknowledge, logical_id
from infra.constructs.storage import TABLE_READ_WRITE, Storage


class Sweeper(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        kit: FunctionKit,
        storage: Storage,
        aggregate: FmaFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function: FmaFunction = kit.create(
            self,
            "SweeperFunction",
            name="sweeper",
            memory_mb=config.sweeper_memory_mb,
            timeout_s=config.sweeper_timeout_s,
            environment={
                "FMA_BUCKET_NAME": storage.bucket.bucket_name,
                "FMA_AGGREGATE_FUNCTION": aggregate.function.function_name,
                "FMA_LEASE_SECONDS": str(config.lease_seconds),
                "FMA_MAX_AGGREGATION_ATTEMPTS": str(config.max_aggregation_attempts),
                "FMA_RECONCILE_GRACE_SECONDS": str(config.reconcile_grace_seconds),
                "FMA_MAX_INGEST_ATTEMPTS": str(config.max_ingest_attempts),
            },
        )
        fn = self.function
        fn.grant(TABLE_READ_WRITE, [storage.table.table_arn, *storage.index_arns("due-rounds")])
        fn.grant(["s3:ListBucket"], [storage.bucket.bucket_arn], StringLike={"s3:prefix": ["updates/*"]})
        # it ingests lost uploads through ingest's code: pinned ranged reads of the update and,
        # for the norm bound, of the round's global model
        fn.grant(["s3:GetObject", "s3:GetObjectVersion"], storage.objects("updates/", "models/"))
        # an abandoned multipart upload of an update is aborted (the lifecycle rule is the backstop)
        fn.grant(["s3:AbortMultipartUpload"], storage.objects("updates/"))
        fn.grant(["lambda:InvokeFunction"], [aggregate.function.function_arn])
        storage.grant_pointer_writes(fn)
        acknowledge(
            fn.role,
            {
                f"AwsSolutions-IAM5[Resource::<{logical_id(storage.bucket)}.Arn>/updates/*]": (
                    "Scoped to the updates/ prefix the sweeper reconciles."
                ),
                f"AwsSolutions-IAM5[Resource::<{logical_id(storage.bucket)}.Arn>/models/*]": (
                    "Read only: the global model an overdue update's norm bound is checked against."
                ),
            },
        )
        self.rule = events.Rule(
            self,
            "EveryMinute",
            description="Run the FMA sweeper: deadlines, leases, retries, reconciliation.",
            schedule=events.Schedule.rate(Duration.minutes(1)),
            targets=[targets.LambdaFunction(fn.function, retry_attempts=0)],
        )
