"""Environment settings of the functions, validated at cold start with a clear message.

Every variable is named once here. Each function declares exactly what it reads in its own
`functions/<name>/settings.py` (a `FunctionSettings`); its CDK construct sets exactly that list,
and tests/infra/test_settings.py holds the two together. A limit a function did not declare is
not silently defaulted: reading it raises, so a code path that starts to need a setting fails
the tests until the function (and its construct) names it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from fma.services.deps import Limits

TABLE_NAME = "FMA_TABLE_NAME"
BUCKET_NAME = "FMA_BUCKET_NAME"
AGGREGATE_FUNCTION = "FMA_AGGREGATE_FUNCTION"
CORS_ORIGIN = "FMA_CORS_ORIGIN"
STRATEGY_MODULES = "FMA_STRATEGY_MODULES"  # read by fma.domain.strategy_catalog (PLUGIN_ENV)
PRESIGN_SECONDS = "FMA_PRESIGN_SECONDS"
DIRECT_UPLOAD_MAX_BYTES = "FMA_DIRECT_UPLOAD_MAX_BYTES"
MAX_UPDATE_BYTES = "FMA_MAX_UPDATE_BYTES"
LEASE_SECONDS = "FMA_LEASE_SECONDS"
MAX_AGGREGATION_ATTEMPTS = "FMA_MAX_AGGREGATION_ATTEMPTS"
RECONCILE_GRACE_SECONDS = "FMA_RECONCILE_GRACE_SECONDS"
MAX_INGEST_ATTEMPTS = "FMA_MAX_INGEST_ATTEMPTS"
POLL_RETRY_AFTER_SECONDS = "FMA_POLL_RETRY_AFTER_SECONDS"
#: the fanout state machine (issue 14) that ingest and the sweeper start for fanout rounds,
#: the auto plan's thresholds, and the ranged reads in flight per aggregating function.
FANOUT_STATE_MACHINE = "FMA_FANOUT_STATE_MACHINE"
FANOUT_MIN_UPDATES = "FMA_FANOUT_MIN_UPDATES"
FANOUT_MIN_BYTES = "FMA_FANOUT_MIN_BYTES"
FANOUT_SINGLE_MAX_MODEL_BYTES = "FMA_FANOUT_SINGLE_MAX_MODEL_BYTES"
READ_CONCURRENCY = "FMA_READ_CONCURRENCY"
#: the DP noise key (services/dp_noise.py): a Secrets Manager secret on AWS (aggregate only),
#: a 0600 key file in local mode.
DP_SECRET_ARN = "FMA_DP_SECRET_ARN"
DP_SECRET_FILE = "FMA_DP_SECRET_FILE"
CLIENT_TOKEN_MAX_SECONDS = "FMA_CLIENT_TOKEN_MAX_SECONDS"
CLIENT_TOKEN_GRACE_SECONDS = "FMA_CLIENT_TOKEN_GRACE_SECONDS"
#: the clients an experiment expects when its creator does not say: its default shard count
#: (ceil(N / 8), at most 128; docs/scale.md).
DEFAULT_EXPECTED_CLIENTS = "FMA_DEFAULT_EXPECTED_CLIENTS"
#: multipart uploads (issue 13 item 4): from this declared size up, and the smallest part.
MULTIPART_THRESHOLD_BYTES = "FMA_MULTIPART_THRESHOLD_BYTES"
MULTIPART_PART_BYTES = "FMA_MULTIPART_PART_BYTES"
#: where clients fetch pointer objects (services/pointer.py): the API function only.
POINTER_BASE_URL = "FMA_POINTER_BASE_URL"
# Read by powertools: Logger reads the service name and level, Metrics the service and namespace.
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
LOGGER = (POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL)
LOGGER_AND_METRICS = (*LOGGER, POWERTOOLS_METRICS_NAMESPACE)

#: the Limits field each limit variable sets.
LIMITS = {
    PRESIGN_SECONDS: "presign_seconds", DIRECT_UPLOAD_MAX_BYTES: "direct_upload_max_bytes",
    MAX_UPDATE_BYTES: "max_update_bytes", LEASE_SECONDS: "lease_seconds",
    MAX_AGGREGATION_ATTEMPTS: "max_aggregation_attempts", RECONCILE_GRACE_SECONDS: "reconcile_grace_seconds",
    MAX_INGEST_ATTEMPTS: "max_ingest_attempts", POLL_RETRY_AFTER_SECONDS: "poll_retry_after_seconds",
    CLIENT_TOKEN_MAX_SECONDS: "client_token_max_seconds", CLIENT_TOKEN_GRACE_SECONDS: "client_token_grace_seconds",
    FANOUT_MIN_UPDATES: "fanout_min_updates", FANOUT_MIN_BYTES: "fanout_min_bytes",
    FANOUT_SINGLE_MAX_MODEL_BYTES: "fanout_single_max_model_bytes",
    READ_CONCURRENCY: "read_concurrency", DEFAULT_EXPECTED_CLIENTS: "expected_clients",
    MULTIPART_THRESHOLD_BYTES: "multipart_threshold_bytes", MULTIPART_PART_BYTES: "multipart_part_bytes",
}
#: set by a construct only when the deployment configures it (custom strategies).
CONFIGURED_ONLY = frozenset({STRATEGY_MODULES})
#: provided by the Lambda runtime itself; never set by a construct.
RUNTIME = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
#: local mode and tests point the adapters at moto with these; never set on AWS.
LOCAL_ONLY = ("FMA_DYNAMODB_ENDPOINT", "AWS_ENDPOINT_URL_DYNAMODB", "FMA_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3",
              "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL", DP_SECRET_FILE)


class SettingsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Settings:
    table_name: str
    bucket_name: str | None
    region: str
    dynamodb_endpoint: str | None
    s3_endpoint: str | None
    aggregate_function: str | None
    limits: Limits
    cors_origin: str | None = None
    # SQS is reachable: on Lambda, or through an emulated endpoint (local mode on moto). Local
    # mode's own events name no real queue, and nothing may reach real AWS from a laptop.
    sqs_reachable: bool = False
    dp_secret_arn: str | None = None
    dp_secret_file: str | None = None
    fanout_state_machine: str | None = None
    #: the function's memory as the Lambda runtime reports it (the round's cost).
    function_memory_mb: int | None = None
    pointer_base_url: str | None = None

    @classmethod
    def from_env(cls, *, need_bucket: bool = True, names: Collection[str] | None = None,
                 env: Mapping[str, str] | None = None, function: str = "this function") -> Settings:
        """Read the named variables (all of them when `names` is None: tests and local tools)."""
        env = os.environ if env is None else env
        named = set(LIMITS) | {TABLE_NAME, BUCKET_NAME, AGGREGATE_FUNCTION, CORS_ORIGIN, DP_SECRET_ARN,
                               FANOUT_STATE_MACHINE, POINTER_BASE_URL} \
            if names is None else set(names)

        def get(name: str) -> str | None:
            return env.get(name) if name in named else None

        table, bucket = get(TABLE_NAME), get(BUCKET_NAME)
        if not table:
            raise SettingsError(f"{TABLE_NAME} is not set")
        if need_bucket and BUCKET_NAME in named and not bucket:
            raise SettingsError(f"{BUCKET_NAME} is not set")
        return cls(
            table_name=table, bucket_name=bucket,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            dynamodb_endpoint=env.get("FMA_DYNAMODB_ENDPOINT") or env.get("AWS_ENDPOINT_URL_DYNAMODB"),
            s3_endpoint=env.get("FMA_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3"),
            aggregate_function=get(AGGREGATE_FUNCTION) or None, limits=_limits(env, named, function),
            cors_origin=get(CORS_ORIGIN) or None,
            sqs_reachable=bool(env.get("AWS_LAMBDA_FUNCTION_NAME") or env.get("AWS_ENDPOINT_URL_SQS")
                               or env.get("AWS_ENDPOINT_URL")),
            dp_secret_arn=get(DP_SECRET_ARN) or None, dp_secret_file=env.get(DP_SECRET_FILE) or None,
            fanout_state_machine=get(FANOUT_STATE_MACHINE) or None,
            function_memory_mb=_runtime_int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")),
            pointer_base_url=get(POINTER_BASE_URL) or None,
        )


@dataclass(frozen=True)
class FunctionSettings:
    """What one function reads from its environment (its construct sets exactly `reads`,
    less the CONFIGURED_ONLY names a deployment does not configure)."""

    function: str
    reads: tuple[str, ...]

    def load(self, env: Mapping[str, str] | None = None) -> Settings:
        return Settings.from_env(need_bucket=BUCKET_NAME in self.reads, names=self.reads, env=env,
                                 function=self.function)


def read_one(name: str, declared: FunctionSettings) -> str | None:
    """One variable on its own (read at import time); it must be among `declared.reads`."""
    if name not in declared.reads:
        raise SettingsError(f"the {declared.function} function does not declare {name}")
    return os.environ.get(name) or None


def _limits(env: Mapping[str, str], named: set[str], function: str) -> Limits:
    defaults = Limits()
    values = {field: _int(env, name, int(getattr(defaults, field))) for name, field in LIMITS.items() if name in named}
    undeclared = {field: name for name, field in LIMITS.items() if name not in named}
    return DeclaredLimits(**values, undeclared=undeclared, function=function) if undeclared else Limits(**values)


@dataclass(frozen=True, repr=False, eq=False)
class DeclaredLimits(Limits):
    """Limits whose undeclared fields raise when read, naming the variable to declare."""

    undeclared: Mapping[str, str] = dataclasses.field(default_factory=dict)
    function: str = "this function"

    def __getattribute__(self, name: str) -> Any:
        undeclared = object.__getattribute__(self, "undeclared")
        if name in undeclared:
            function = object.__getattribute__(self, "function")
            raise SettingsError(f"the {function} function reads {undeclared[name]} but its settings do not "
                                f"declare it (functions/{function}/settings.py and its construct)")
        return object.__getattribute__(self, name)

    def __repr__(self) -> str:
        return f"DeclaredLimits(function={self.function!r}, undeclared={sorted(self.undeclared.values())})"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw[:40]!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive")
    return value


def _runtime_int(raw: str | None) -> int | None:
    """A number the Lambda runtime sets (absent off Lambda, never malformed on it)."""
    return int(raw) if raw and raw.isdigit() else None
