"""What every use case needs, built once per cold start by the handler's cached factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fma.domain.clock import now as wall_clock
from fma.domain.experiment import Experiment
from fma.services.ports import Invoker, MetadataStore, ModelStore, SecretStore, TokenAuthStore


@dataclass(frozen=True)
class Limits:
    presign_seconds: int = 900
    direct_upload_max_bytes: int = 5 << 20
    max_update_bytes: int = 1 << 30
    lease_seconds: float = 900.0
    max_aggregation_attempts: int = 3
    reconcile_grace_seconds: float = 300.0
    # unexpected (not client-caused) failures of one update before it is marked FAILED.
    max_ingest_attempts: int = 4
    # the polling hint (Retry-After, seconds) on GET model/round while nothing changed.
    poll_retry_after_seconds: int = 5
    #: client tokens: at most this long from registration, and this long past their experiment's end
    client_token_max_seconds: int = 365 * 86400
    client_token_grace_seconds: int = 7 * 86400
    # auto plan: fanout from this many accepted updates, or this many bytes of them (docs/scale.md).
    fanout_min_updates: int = 2000
    fanout_min_bytes: int = 4 << 30
    # auto plan: fanout for a model above this, whatever K (the single function holds ~4x the model).
    fanout_single_max_model_bytes: int = 688 << 20
    # ranged reads in flight per aggregating function (S3 serves each connection ~90 MB/s).
    read_concurrency: int = 16
    #: clients an experiment expects when its creator does not say (fma.domain.sharding: its shards)
    expected_clients: int = 1000
    #: declared sizes from this many bytes up are uploaded as multipart uploads (fma.domain.multipart),
    #: in parts of at least `multipart_part_bytes` (S3: 5 MiB to 5 GiB, at most 10,000 parts).
    multipart_threshold_bytes: int = 100 << 20
    multipart_part_bytes: int = 64 << 20


@dataclass
class Deps:
    """A connector's two stores, the aggregate invoker, the limits and the clock (tests move it)."""

    repo: MetadataStore
    store: ModelStore
    invoker: Invoker | None = None
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = wall_clock
    #: the DP noise key (services/dp_noise.py); None: noise from the OS CSPRNG, not reproducible.
    secrets: SecretStore | None = None
    #: this function's memory (Lambda's runtime says it), for the round's cost; None: nominal.
    function_memory_mb: int | None = None
    #: where clients reach pointer objects (services/pointer.py): the dashboard's CloudFront on
    #: AWS, local mode's gateway; None: no poll_url is given out (clients poll the API).
    pointer_base_url: str | None = None


@dataclass
class TokenDeps:
    """What resolving and minting tokens needs (the authorizer and `fma token create`): no objects;
    the experiment read and the limits because a client token ends with its experiment."""

    repo: TokenAuthStore
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = wall_clock


def model_key(experiment_id: str, n: int) -> str:
    return f"models/{experiment_id}/{n:08d}.safetensors"


def model_version_id(exp: Experiment, n: int) -> str | None:
    """The object version every read of model `n` must use. Version 0 is pinned to the object
    that was validated at activation: the developer's presigned POST stays valid until it
    expires, so a later write to that key is a new version that nothing may read. Published
    rounds' models are written by aggregation only (None: the newest version)."""
    return exp.initial_version_id if n == 0 else None


def manifest_key(experiment_id: str, n: int) -> str:
    return f"models/{experiment_id}/{n:08d}.manifest.json"


def update_key(experiment_id: str, n: int, client_id: str) -> str:
    return f"updates/{experiment_id}/{n:08d}/{client_id}.safetensors"


def state_key(experiment_id: str, n: int) -> str:
    return f"state/{experiment_id}/{n:08d}.safetensors"
