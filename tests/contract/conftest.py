"""The connectors under contract: every test in this folder runs once per connector.

aws runs on moto (DynamoDB made per-request atomic as the real service is), memory on
dictionaries, sqlite_fs on a fresh state directory. A connector that passes this suite is a
connector (docs/connectors.md).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import pytest

from fma.services.ports import MetadataStore, ModelStore, ObjectEvents

CONNECTORS = ["aws", "memory"] + (["sqlite_fs"] if importlib.util.find_spec("fma.adapters.sqlite_fs") else [])


@dataclass
class Connector:
    name: str
    repo: MetadataStore
    store: ModelStore
    events: ObjectEvents | None
    extra: Any = None


def _aws():
    import boto3
    from moto import mock_aws

    from fma.adapters.dynamo_models import configure_table, create_table
    from fma.adapters.repository import DynamoRepository
    from fma.adapters.s3_store import S3ObjectStore
    from fma.local.moto_atomic import make_moto_dynamodb_atomic
    from fma.local.sqs_events import SqsObjectEvents, route_created_events

    make_moto_dynamodb_atomic()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        bucket = os.environ["FMA_BUCKET_NAME"]
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        configure_table(os.environ["FMA_TABLE_NAME"])
        create_table()
        queue_url = route_created_events(None, bucket, "fma-contract")
        yield Connector("aws", DynamoRepository(os.environ["FMA_TABLE_NAME"]), S3ObjectStore(bucket, client=s3),
                        SqsObjectEvents(queue_url))


def _memory():
    from fma.adapters.memory import memory_connector

    repo, store, events = memory_connector()
    yield Connector("memory", repo, store, events)


def _sqlite_fs(tmp_path):
    from fma.adapters.sqlite_fs import open_connector

    conn = open_connector(tmp_path / "state", public_url="http://127.0.0.1:1")
    yield Connector("sqlite_fs", conn.repo, conn.store, conn.events, conn)
    conn.close()


@pytest.fixture(params=CONNECTORS)
def connector(request, tmp_path):
    if request.param == "aws":
        yield from _aws()
    elif request.param == "memory":
        yield from _memory()
    else:
        yield from _sqlite_fs(tmp_path)
