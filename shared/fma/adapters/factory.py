"""Builds the service dependencies from settings; handlers cache the result per cold start.

Lambda runs the `aws` connector. Local mode and tests replace the connector through
`set_connector_override` (local mode's default is `sqlite_fs`) and the invoker through
`set_invoker_override` (the aggregate function runs in a local worker instead of through Lambda).
Nothing here reads the environment: `Settings` does, once.
"""

from __future__ import annotations

from collections.abc import Callable

from fma.adapters import aws
from fma.adapters.invoker import LambdaInvoker
from fma.adapters.secret_stores import FileSecretStore, SecretsManagerStore
from fma.adapters.settings import Settings
from fma.services.deps import Deps, TokenDeps
from fma.services.pointer import PointerPublishing
from fma.services.ports import Invoker, MetadataStore, ModelStore, SecretStore

#: builds a connector's two stores from the settings.
Connector = Callable[[Settings], tuple[MetadataStore, ModelStore]]

_invoker_override: Invoker | None = None
_connector_override: Connector | None = None


def set_invoker_override(invoker: Invoker | None) -> None:
    global _invoker_override
    _invoker_override = invoker


def set_connector_override(connector: Connector | None) -> None:
    global _connector_override
    _connector_override = connector


def build_deps(settings: Settings) -> Deps:
    repo, store = (_connector_override or aws.aws_stores)(settings)
    invoker: Invoker | None = _invoker_override
    if invoker is None and settings.aggregate_function:
        invoker = LambdaInvoker(settings.aggregate_function)
    if _invoker_override is None and settings.fanout_state_machine:  # ingest, sweeper on AWS
        from fma.adapters.stepfunctions import StepFunctionsStarter
        from fma.services.plan_router import PlanRouter, fanout_thresholds

        limits = settings.limits
        invoker = PlanRouter(invoker, StepFunctionsStarter(settings.fanout_state_machine), repo,
                             fanout_thresholds(limits))
    return Deps(repo=PointerPublishing(repo, store), store=store, invoker=invoker, limits=settings.limits,
                secrets=secret_store(settings), function_memory_mb=settings.function_memory_mb,
                pointer_base_url=settings.pointer_base_url)


def secret_store(settings: Settings) -> SecretStore | None:
    """The DP noise key's store: Secrets Manager when its ARN is set, else the key file, else none."""
    if settings.dp_secret_arn:
        return SecretsManagerStore(settings.dp_secret_arn)
    if settings.dp_secret_file:
        return FileSecretStore(settings.dp_secret_file)
    return None


def build_token_deps(settings: Settings) -> TokenDeps:
    """The authorizer's dependencies: tokens and experiments (a client token ends with its
    experiment) and the limits; it needs no bucket."""
    if _connector_override is not None:
        return TokenDeps(repo=_connector_override(settings)[0], limits=settings.limits)
    return TokenDeps(repo=aws.metadata_store(settings), limits=settings.limits)
