"""One frozen settings object for the whole deployment, read from cdk context.

Precedence (last wins): the dataclass defaults, ``context.stages.<stage>`` in ``cdk.json``,
then single keys given on the command line (``cdk synth -c stage=prod -c alarm_email=x``).
Command-line values arrive as strings and are converted to the field's type; anything
unknown or out of range fails the synth with a message that names the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from constructs import Node

ROOT = Path(__file__).resolve().parents[1]

# CDK feature flags the stack relies on; app.py and the tests pass them to App(context=...).
FEATURE_FLAGS = {
    # S3 server access logs are authorized by bucket policy, not the legacy LogDeliveryWrite
    # ACL (cfn-lint W3045).
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}

# Memory a function needs whatever max_update_bytes is (MEMORY_FIT): the Python runtime and the
# layer (numpy, powertools, boto3) take about RUNTIME_MB; every function streams updates. Ingest
# and the sweeper check them over ranged reads of at most 16 MiB (fma.domain.ranged):
# STREAMING_MB. The fanout tasks (the aggregate function's start/reduce, the piece function)
# hold a few parameter ranges of shard_bytes (64 MiB by default), never the model: FANOUT_MB
# (docs/scale.md: children 192-320 MB, reduces 32-80 MiB at 8 MiB ranges). {function: (memory
# setting, working MB, what the working MB hold)}. The single plan holds the global model and a float accumulator whole
# (SINGLE_MODEL_MULTIPLE x the model): the auto plan fans out any model above what the aggregate
# function's memory holds that way (single_max_model_bytes), whatever the round's K.
RUNTIME_MB = 256
STREAMING_MB = 128
FANOUT_MB = 768
SINGLE_MODEL_MULTIPLE = 4
_RANGED_READS = f"{STREAMING_MB} MB of ranged reads"
_FANOUT_RANGES = f"{FANOUT_MB} MB for a few parameter ranges of the fanout plan"
MEMORY_FIT = {
    "ingest": ("ingest_memory_mb", STREAMING_MB, _RANGED_READS),
    "sweeper": ("sweeper_memory_mb", STREAMING_MB, _RANGED_READS),
    "aggregate": ("aggregate_memory_mb", FANOUT_MB, _FANOUT_RANGES),
    "aggregate_piece": ("fanout_piece_memory_mb", FANOUT_MB, _FANOUT_RANGES),
}

# Lambda caps a synchronous invocation's request at 6 MB; API Gateway base64-encodes binary
# bodies (x 4/3), so a raw body above ~4.4 MB can never reach the API function.
LAMBDA_SAFE_DIRECT_UPLOAD_BYTES = 4 * 1024 * 1024
# the largest update a deployment may allow (multipart: 10,000 parts; fma.domain.multipart)
MAX_UPDATE_BYTES = 50 * 1024**3


@dataclass(frozen=True)
class Config:
    """Every tunable of a deployment; one instance per stack."""

    stage: str = "dev"
    # Keep data and logs when the stack is deleted (defaults to True only for "prod").
    retain: bool = False
    log_level: str = "INFO"
    log_retention_days: int = 30
    access_log_retention_days: int = 90
    # Lambda memory (MB) and timeouts (seconds).
    api_memory_mb: int = 512
    api_timeout_s: int = 29
    authorizer_memory_mb: int = 256
    authorizer_timeout_s: int = 10
    # ingest and the sweeper (which ingests lost uploads) stream updates: see MEMORY_FIT.
    ingest_memory_mb: int = 1536
    ingest_timeout_s: int = 120
    aggregate_memory_mb: int = 3008
    aggregate_timeout_s: int = 900
    sweeper_memory_mb: int = 1536
    sweeper_timeout_s: int = 120
    # Ingestion and aggregation.
    ingest_batch_size: int = 10
    # at most this many ingest functions poll the queue at once (the SQS event source's
    # MaximumConcurrency, 2..1000): bounds ingest's writes per second whatever the upload burst;
    # messages beyond it wait in the queue instead of throttling (docs/scale.md, "Bounded ingest").
    ingest_max_concurrency: int = 50
    ingest_max_receive_count: int = 5
    # unexpected failures of one update (retried within seconds) before it is FAILED; must stay
    # below ingest_max_receive_count so the update is marked before SQS dead-letters its message.
    max_ingest_attempts: int = 4
    aggregate_retry_attempts: int = 2
    max_aggregation_attempts: int = 3
    reconcile_grace_seconds: int = 300
    # Fanout aggregation (docs/scale.md): the auto plan's thresholds, the Map's children, reads.
    fanout_min_updates: int = 2000
    fanout_min_bytes: int = 4 * 1024**3
    fanout_piece_memory_mb: int = 3008
    fanout_piece_timeout_s: int = 900
    fanout_piece_retries: int = 3
    fanout_max_concurrency: int = 1000
    fanout_tolerated_failure_percentage: int = 0
    fanout_timeout_hours: int = 6
    read_concurrency: int = 16
    # partial objects of fanout rounds are deleted this long after they were written.
    partials_retention_days: int = 1
    # Uploads and quotas.
    presign_seconds: int = 900
    direct_upload_max_bytes: int = LAMBDA_SAFE_DIRECT_UPLOAD_BYTES
    max_update_bytes: int = 512 * 1024 * 1024
    # Declared sizes from this many bytes up are uploaded as S3 multipart uploads with presigned
    # part URLs (docs/api-contract.md, "Multipart uploads"), in parts of at least this many bytes.
    multipart_threshold_bytes: int = 100 * 1024 * 1024
    multipart_part_bytes: int = 64 * 1024 * 1024
    # Stage throttling sized for `expected_clients` (docs/deploy.md, "Throttling and quotas"):
    # polls = clients / poll_retry_after_seconds = 10,000 / 10 = 1,000 rps, plus a round's
    # model download, upload request and evaluation (3 per client per round, rounds >= 60 s
    # apart: 500 rps) = 1,500 rps; the burst absorbs the download rush after a publish (2 x).
    expected_clients: int = 10_000
    # an experiment created without `expected_clients` expects this many: its shard count
    # (docs/scale.md, "No hot key"); unrelated to the fleet size above.
    experiment_expected_clients: int = 1_000
    poll_retry_after_seconds: int = 10
    api_rate_limit: int = 1_500
    api_burst_limit: int = 3_000
    api_quota_per_day: int = 150_000_000
    authorizer_cache_seconds: int = 300
    # Client tokens: at most this long from registration, and this long past their experiment's end.
    client_token_max_seconds: int = 365 * 86400
    client_token_grace_seconds: int = 7 * 86400
    # Storage lifecycle.
    update_retention_days: int = 30
    noncurrent_version_days: int = 30
    # S3 Object Lock on the model bucket (issue 16): "governance" or "compliance" default
    # retention of every object version (models, manifests, and the pinned update versions a
    # re-run needs) for object_lock_days. Only at bucket creation; needs retain (prod).
    object_lock: str | None = None
    object_lock_days: int = 365
    # Edge protection: a regional WAF web ACL on the API stage (costs money while idle).
    waf: bool = False
    waf_rate_limit_per_5min: int = 3000
    # Custom strategy modules (comma-separated) for the api and aggregate functions; their
    # packages must be in layers/requirements.txt (docs/custom-strategies.md).
    strategy_modules: str | None = None
    # Alarms go to an SNS topic; an e-mail subscription is added when this is set.
    alarm_email: str | None = None
    # Build inputs, relative to the repository root.
    functions_build_dir: str = "build/functions"
    layer_dir: str = "layers/build"
    web_dir: str = "web"
    # Free-form tags added to every resource.
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def stack_name(self) -> str:
        return f"fma-{self.stage}"

    def path(self, relative: str) -> Path:
        """Resolve a build-input setting against the repository root."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else ROOT / candidate

    @property
    def lease_seconds(self) -> int:
        """An aggregation lease outlives the aggregate function's timeout by a minute."""
        return self.aggregate_timeout_s + 60

    @property
    def strategy_environment(self) -> dict[str, str]:
        """``FMA_STRATEGY_MODULES`` when custom strategies are configured, else nothing."""
        return {"FMA_STRATEGY_MODULES": self.strategy_modules} if self.strategy_modules else {}

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_context(cls, node: Node) -> Config:
        """Build the settings for the stage named by ``-c stage=...`` (default dev)."""
        stage = str(node.try_get_context("stage") or "dev")
        stages = node.try_get_context("stages") or {}
        values: dict[str, Any] = {"stage": stage, "retain": stage == "prod"}
        values.update(stages.get(stage, {}))
        for f in fields(cls):
            given = node.try_get_context(f.name)
            if given is not None and f.name != "stage":
                values[f.name] = given
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown fma settings in cdk context: {', '.join(unknown)}")
        hints = get_type_hints(cls)
        return cls(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})


def _coerce(name: str, value: Any, hint: Any) -> Any:
    if not isinstance(value, str):
        return value
    if hint is bool:
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"setting {name} must be true or false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    if hint is int:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"setting {name} must be an integer, got {value!r}") from None
    return value or None if hint == str | None else value


def _validate(config: Config) -> None:
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"invalid fma setting: {message}")

    check(config.stage.isalnum() and config.stage.islower(), "stage must be lowercase a-z0-9")
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name.endswith("_memory_mb"):
            check(128 <= value <= 10240, f"{f.name} must be 128..10240")
        elif f.name.endswith("_timeout_s"):
            check(1 <= value <= 900, f"{f.name} must be 1..900")
    check(config.api_timeout_s <= 29, "api_timeout_s must be at most 29 (API Gateway limit)")
    check(config.authorizer_cache_seconds <= 3600, "authorizer_cache_seconds must be <= 3600")
    check(1 <= config.ingest_batch_size <= 10, "ingest_batch_size must be 1..10")
    check(2 <= config.ingest_max_concurrency <= 1000,
          "ingest_max_concurrency must be 2..1000 (the SQS event source's maximum concurrency)")
    check(
        0 < config.direct_upload_max_bytes <= LAMBDA_SAFE_DIRECT_UPLOAD_BYTES,
        "direct_upload_max_bytes must fit a Lambda request after base64 (<= 4 MiB)",
    )
    check(0 < config.max_update_bytes <= MAX_UPDATE_BYTES, "max_update_bytes must be 1..50 GiB (53687091200)")
    check(config.multipart_threshold_bytes >= 5 * 1024**2, "multipart_threshold_bytes must be at least 5 MiB")
    check(5 * 1024**2 <= config.multipart_part_bytes <= 5 * 1024**3,
          "multipart_part_bytes must be 5 MiB..5 GiB (S3's part sizes)")
    check(0 <= config.aggregate_retry_attempts <= 2, "aggregate_retry_attempts must be 0..2")
    check(1 <= config.fanout_max_concurrency <= 10_000, "fanout_max_concurrency must be 1..10000 (Distributed Map)")
    check(0 <= config.fanout_tolerated_failure_percentage <= 100, "fanout_tolerated_failure_percentage: 0..100")
    check(0 <= config.fanout_piece_retries <= 10, "fanout_piece_retries must be 0..10")
    check(1 <= config.read_concurrency <= 64, "read_concurrency must be 1..64")
    check(config.fanout_min_updates >= 1 and config.fanout_min_bytes >= 1, "fanout thresholds must be positive")
    check(1 <= config.fanout_timeout_hours <= 24 * 365, "fanout_timeout_hours must be 1..8760")
    check(config.partials_retention_days >= 1, "partials_retention_days must be positive")
    check(config.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"), "log_level")
    check(
        1 <= config.max_ingest_attempts < config.ingest_max_receive_count,
        "max_ingest_attempts must be at least 1 and below ingest_max_receive_count "
        "(an update is marked FAILED before SQS dead-letters its message)",
    )
    check(1 <= config.poll_retry_after_seconds <= 3600, "poll_retry_after_seconds must be 1..3600")
    check(config.expected_clients >= 1, "expected_clients must be positive")
    check(1 <= config.experiment_expected_clients <= 10_000_000, "experiment_expected_clients must be 1..10000000")
    check(config.api_burst_limit >= config.api_rate_limit >= 1, "api_burst_limit must be >= api_rate_limit >= 1")
    check(config.object_lock in (None, "governance", "compliance"), "object_lock must be governance or compliance")
    check(1 <= config.object_lock_days <= 36500, "object_lock_days must be 1..36500")
    check(config.object_lock is None or config.retain, "object_lock needs retain=true (locked objects cannot be "
          "auto-deleted)")
    misfits = memory_misfits(config)
    check(not misfits, "; ".join(misfits))


def required_memory_mb(config: Config, function: str) -> int:
    """The memory `function` needs to stream updates of any size (MEMORY_FIT)."""
    return RUNTIME_MB + MEMORY_FIT[function][1]


def single_max_model_bytes(config: Config) -> int:
    """The largest model the single plan aggregates in the aggregate function's memory; the
    auto plan fans out a larger one (FMA_FANOUT_SINGLE_MAX_MODEL_BYTES)."""
    return (config.aggregate_memory_mb - RUNTIME_MB) * 1024 * 1024 // SINGLE_MODEL_MULTIPLE


def memory_misfits(config: Config) -> list[str]:
    """One message per function whose memory cannot hold its streaming working set."""
    problems = []
    for function, (setting, _, what) in MEMORY_FIT.items():
        need, have = required_memory_mb(config, function), getattr(config, setting)
        if have < need:
            problems.append(
                f"the {function} function's memory is too small for updates of any size: {setting}={have} MB, "
                f"it needs at least {need} MB ({RUNTIME_MB} MB runtime + {what}); raise {setting}"
            )
    return problems
