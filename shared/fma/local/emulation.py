"""The aws-emulation backend: moto's server on loopback with the bucket, table and queue created
from the same definitions the handlers use, and S3 notifications routed to SQS.

Clients are never given moto's endpoint: their transfers go through the gateway's grants
(fma.local.objects.GrantingStore)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import boto3

from fma.adapters.dynamo_models import configure_table, create_table
from fma.local.sqs_events import route_created_events

REGION = "us-east-1"
BUCKET = "fma-local-models"
TABLE = "fma-local"
QUEUE = "fma-local-ingest"


@dataclass
class Emulation:
    endpoint: str
    queue_url: str
    server: object
    replayed: int = 0
    meter: object | None = None

    def stop(self) -> None:
        from fma.local.persistence import stop_recording

        stop_recording()
        if self.meter is not None:
            self.meter.stop()
        self.server.stop()


def local_environment(extra: dict[str, str] | None = None) -> None:
    """The handlers' settings in local mode; AWS credentials are fakes, so no real AWS is reachable."""
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION, "FMA_TABLE_NAME": TABLE, "FMA_BUCKET_NAME": BUCKET,
        "FMA_LEASE_SECONDS": os.environ.get("FMA_LEASE_SECONDS", "60"),
        "POWERTOOLS_SERVICE_NAME": "fma-local", "POWERTOOLS_METRICS_NAMESPACE": "FMA",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        **(extra or {}),
    })
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


def _environment(endpoint: str) -> None:
    """Every boto3/pynamodb client in this process talks to moto."""
    local_environment({"AWS_ENDPOINT_URL": endpoint, "FMA_S3_ENDPOINT": endpoint, "FMA_DYNAMODB_ENDPOINT": endpoint})


def start_emulation(host: str = "127.0.0.1", state_dir: Path | None = None) -> Emulation:
    """Start moto on loopback; with a `state_dir`, replay its recorded writes and keep recording."""
    import logging

    from moto.server import ThreadedMotoServer

    from fma.local.moto_atomic import make_moto_dynamodb_atomic

    make_moto_dynamodb_atomic()
    meter = _start_meter(os.environ.get(HOT_KEYS_ENV))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    bound_host, port = server.get_host_and_port()
    endpoint = f"http://{bound_host}:{port}"
    _environment(endpoint)
    replayed = 0
    if state_dir is not None:
        from fma.local.persistence import RECORDING, replay, start_recording

        recording = state_dir / RECORDING
        if recording.exists():
            replayed = replay(recording, endpoint)
        start_recording(recording)
    queue_url = provision(endpoint)
    return Emulation(endpoint, queue_url, server, replayed, meter)


#: a file path: meter DynamoDB writes per partition key (fma.local.hot_keys) and keep them there.
HOT_KEYS_ENV = "FMA_HOT_KEYS_FILE"


def _start_meter(path: str | None):
    if not path:
        return None
    from fma.local.hot_keys import MeterFile

    return MeterFile(Path(path)).start()


def provision(endpoint: str) -> str:
    """Bucket (versioned), table, queue and the S3 -> SQS notification; idempotent."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    configure_table(TABLE, REGION, endpoint)
    create_table()
    return route_created_events(endpoint, BUCKET, QUEUE)
