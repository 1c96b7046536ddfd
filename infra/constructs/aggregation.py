"""Aggregation: the aggregate function, invoked asynchronously per sealed round.

Payload ``{"experiment_id", "round"}``. Lambda retries a failed invocation
``aggregate_retry_attempts`` times, then sends the event to an SQS dead-letter queue (the
on-failure destination) where the alarm and the operator find it; the sweeper reclaims the
round's lease meanwhile. Exposes ``function`` (an :class:`FmaFunction`), ``dlq`` and
``noise_key``: the Secrets Manager secret that seeds DP noise (services/dp_noise.py), readable
by this function only.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import Config
from infra.constructs.function import FmaFunction, FunctionKit, acknowledge, logical_id
from infra.constructs.storage import TABLE_READ_WRITE, Storage


def dead_letter_queue(scope: Construct, construct_id: str, purpose: str) -> sqs.Queue:
    """An encrypted, TLS-only queue that keeps failed events for the maximum 14 days."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    acknowledge(queue, {"AwsSolutions-SQS3": f"This queue is the dead-letter queue of {purpose}."})
    return queue


class Aggregation(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        kit: FunctionKit,
        storage: Storage,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dlq = dead_letter_queue(self, "FailedInvocations", "the aggregate function")
        self.noise_key = secretsmanager.Secret(
            self,
            "DpNoiseKey",
            description="FMA: the key DP noise is derived from; never leaves the aggregate function",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
            removal_policy=RemovalPolicy.RETAIN,  # deleting it makes published rounds impossible to re-run
        )
        acknowledge(self.noise_key, {"AwsSolutions-SMG4": (
            "Not a credential: it seeds DP noise. A rotation would only make a new version (manifests name the "
            "version they used); automatic rotation adds nothing.")})
        self.function: FmaFunction = kit.create(
            self,
            "AggregateFunction",
            name="aggregate",
            memory_mb=config.aggregate_memory_mb,
            timeout_s=config.aggregate_timeout_s,
            environment={
                "FMA_BUCKET_NAME": storage.bucket.bucket_name,
                "FMA_LEASE_SECONDS": str(config.lease_seconds),
                "FMA_DP_SECRET_ARN": self.noise_key.secret_arn,
                **config.strategy_environment,
            },
        )
        self.function.function.configure_async_invoke(
            retry_attempts=config.aggregate_retry_attempts,
            max_event_age=Duration.hours(6),
            on_failure=destinations.SqsDestination(self.dlq),
        )
        fn = self.function
        self.noise_key.grant_read(fn.role)
        fn.grant(TABLE_READ_WRITE, [storage.table.table_arn])
        fn.grant(["s3:GetObject"], storage.objects("updates/", "models/", "state/"))
        # Updates are read at the exact version ingest validated, and the initial model at the one
        # activation validated (an overwrite cannot sneak in).
        fn.grant(["s3:GetObjectVersion"], storage.objects("updates/", "models/"))
        fn.grant(["s3:PutObject"], storage.objects("models/", "state/"))
        storage.grant_pointer_writes(fn)
        # An attempt whose publish lost (a STOP first, a lease lost) removes the exact versions it
        # wrote, so no object exists for a model that was never published (services/unpublished.py).
        fn.grant(["s3:DeleteObjectVersion"], storage.objects("models/", "state/"))
        # Without ListBucket, S3 answers 403 instead of 404 for the optional optimizer state.
        fn.grant(["s3:ListBucket"], [storage.bucket.bucket_arn], StringLike={"s3:prefix": ["state/*"]})
        acknowledge(
            fn.role,
            {
                f"AwsSolutions-IAM5[Resource::<{logical_id(storage.bucket)}.Arn>/{p}/*]": (
                    f"Scoped to the {p}/ prefix aggregation reads or writes (DESIGN section 3)."
                )
                for p in ("updates", "models", "state")
            },
        )
