"""Ingestion: S3 ObjectCreated on ``updates/`` and ``models/`` -> SQS -> the ingest function.

Only ``*.safetensors`` keys notify (manifests do not). The queue batches events, at most
``ingest_max_concurrency`` functions consume it at once, the function reports partial batch
failures (``{"batchItemFailures": [...]}``), and a message that keeps failing moves to a
dead-letter queue after ``ingest_max_receive_count`` tries.
The ingest function seals a round when its quota is met and invokes the aggregate function
asynchronously. Exposes ``function``, ``queue`` and ``dlq``.
"""

from __future__ import annotations

import jsii
from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import Config
from infra.constructs.aggregation import dead_letter_queue
from infra.constructs.function import FmaFunction, FunctionKit, acknowledge, logical_id
from infra.constructs.storage import TABLE_READ_WRITE, Storage

NOTIFIED_PREFIXES = ("updates/", "models/")


@jsii.implements(s3.IBucketNotificationDestination)
class AccountScopedQueue:
    """An SQS notification destination whose queue policy admits S3 only for this bucket *and*
    this account (``aws:SourceArn`` plus ``aws:SourceAccount``): a bucket name is global, so the
    ARN alone would admit a same-named bucket re-created in another account (confused deputy).

    ``s3n.SqsDestination`` sets only the ARN condition; the queue is SQS-managed encrypted, so no
    KMS grant is needed.
    """

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(self, _scope: Construct, bucket: s3.IBucket) -> s3.BucketNotificationDestinationConfig:
        self.queue.grant_send_messages(
            iam.ServicePrincipal(
                "s3.amazonaws.com",
                conditions={
                    "ArnLike": {"aws:SourceArn": bucket.bucket_arn},
                    "StringEquals": {"aws:SourceAccount": Stack.of(bucket).account},
                },
            )
        )
        return s3.BucketNotificationDestinationConfig(
            arn=self.queue.queue_arn,
            type=s3.BucketNotificationDestinationType.QUEUE,
            dependencies=[self.queue],
        )


class Ingestion(Construct):
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
        self.dlq = dead_letter_queue(self, "DeadLetters", "the object-created queue")
        self.queue = sqs.Queue(
            self,
            "ObjectCreated",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # AWS guidance: at least six times the consumer's timeout.
            visibility_timeout=Duration.seconds(6 * config.ingest_timeout_s),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=config.ingest_max_receive_count),
        )
        destination = AccountScopedQueue(self.queue)
        for prefix in NOTIFIED_PREFIXES:
            storage.bucket.add_event_notification(
                s3.EventType.OBJECT_CREATED,
                destination,
                s3.NotificationKeyFilter(prefix=prefix, suffix=".safetensors"),
            )
        self.function: FmaFunction = kit.create(
            self,
            "IngestFunction",
            name="ingest",
            memory_mb=config.ingest_memory_mb,
            timeout_s=config.ingest_timeout_s,
            environment={
                "FMA_BUCKET_NAME": storage.bucket.bucket_name,
                "FMA_AGGREGATE_FUNCTION": aggregate.function.function_name,
                "FMA_LEASE_SECONDS": str(config.lease_seconds),
                "FMA_RECONCILE_GRACE_SECONDS": str(config.reconcile_grace_seconds),
                "FMA_MAX_INGEST_ATTEMPTS": str(config.max_ingest_attempts),
            },
        )
        fn = self.function
        fn.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=config.ingest_batch_size,
                max_batching_window=Duration.seconds(1),
                # bounded: at most this many concurrent ingests, the rest wait in the queue
                max_concurrency=config.ingest_max_concurrency,
                report_batch_item_failures=True,
            )
        )
        fn.grant(TABLE_READ_WRITE, [storage.table.table_arn])
        # ingest reads the version it measured (pinned ranged reads: fma.services.ranged_reads)
        fn.grant(["s3:GetObject", "s3:GetObjectVersion"], storage.objects(*NOTIFIED_PREFIXES))
        fn.grant(["lambda:InvokeFunction"], [aggregate.function.function_arn])
        storage.grant_pointer_writes(fn)
        # A failed record comes back within seconds: ingest shortens its visibility (backoff);
        # the event source's consume grant already holds sqs:ChangeMessageVisibility on the queue.
        acknowledge(
            fn.role,
            {
                f"AwsSolutions-IAM5[Resource::<{logical_id(storage.bucket)}.Arn>/{p}*]": (
                    f"Scoped to the {p} prefix whose objects ingest validates."
                )
                for p in NOTIFIED_PREFIXES
            },
        )
