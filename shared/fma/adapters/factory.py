"""Builds the service dependencies from settings; handlers cache the result per cold start.

Local mode and tests replace the invoker through `set_invoker_override` (the aggregate function
runs in a worker thread there instead of through Lambda).
"""

from __future__ import annotations

from fma.adapters.invoker import LambdaInvoker
from fma.adapters.repository import DynamoRepository
from fma.adapters.s3_store import S3ObjectStore
from fma.adapters.secret_stores import FileSecretStore, SecretsManagerStore
from fma.adapters.settings import Settings
from fma.services.deps import Deps
from fma.services.ports import Invoker, SecretStore

_invoker_override: Invoker | None = None


def set_invoker_override(invoker: Invoker | None) -> None:
    global _invoker_override
    _invoker_override = invoker


def build_deps(settings: Settings) -> Deps:
    repo = DynamoRepository(settings.table_name, settings.region, settings.dynamodb_endpoint)
    store = S3ObjectStore(settings.bucket_name or "", endpoint_url=settings.s3_endpoint, region=settings.region)
    invoker: Invoker | None = _invoker_override
    if invoker is None and settings.aggregate_function:
        invoker = LambdaInvoker(settings.aggregate_function)
    return Deps(repo=repo, store=store, invoker=invoker, limits=settings.limits, secrets=secret_store(settings))


def secret_store(settings: Settings) -> SecretStore | None:
    """The DP noise key's store: Secrets Manager when its ARN is set, else the key file, else none."""
    if settings.dp_secret_arn:
        return SecretsManagerStore(settings.dp_secret_arn)
    if settings.dp_secret_file:
        return FileSecretStore(settings.dp_secret_file)
    return None
