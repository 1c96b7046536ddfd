"""The `aws` connector: DynamoDB (pynamodb) for metadata, S3 (boto3) for model data.

These are the adapters Lambda runs (and the tests run on moto); this module only builds them.
"""

from __future__ import annotations

from fma.adapters.repository import DynamoRepository
from fma.adapters.s3_store import S3ObjectStore
from fma.adapters.settings import Settings


def metadata_store(settings: Settings) -> DynamoRepository:
    return DynamoRepository(settings.table_name, settings.region, settings.dynamodb_endpoint)


def aws_stores(settings: Settings) -> tuple[DynamoRepository, S3ObjectStore]:
    """Both stores of the connector, bound to the table, bucket and endpoints in `settings`."""
    store = S3ObjectStore(settings.bucket_name or "", endpoint_url=settings.s3_endpoint, region=settings.region)
    return metadata_store(settings), store
