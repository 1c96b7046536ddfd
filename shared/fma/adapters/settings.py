"""Environment settings shared by every function, validated at cold start with a clear message.

Each function's own `settings.py` names what it reads; this module turns them into adapters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fma.services.deps import Limits


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

    @classmethod
    def from_env(cls, *, need_bucket: bool = True) -> Settings:
        env = os.environ
        table = env.get("FMA_TABLE_NAME")
        bucket = env.get("FMA_BUCKET_NAME")
        if not table:
            raise SettingsError("FMA_TABLE_NAME is not set")
        if need_bucket and not bucket:
            raise SettingsError("FMA_BUCKET_NAME is not set")
        defaults = Limits()
        limits = Limits(
            presign_seconds=_int(env, "FMA_PRESIGN_SECONDS", defaults.presign_seconds),
            direct_upload_max_bytes=_int(env, "FMA_DIRECT_UPLOAD_MAX_BYTES", defaults.direct_upload_max_bytes),
            max_update_bytes=_int(env, "FMA_MAX_UPDATE_BYTES", defaults.max_update_bytes),
            lease_seconds=_int(env, "FMA_LEASE_SECONDS", int(defaults.lease_seconds)),
            max_aggregation_attempts=_int(env, "FMA_MAX_AGGREGATION_ATTEMPTS", defaults.max_aggregation_attempts),
            reconcile_grace_seconds=_int(env, "FMA_RECONCILE_GRACE_SECONDS", int(defaults.reconcile_grace_seconds)),
        )
        return cls(
            table_name=table, bucket_name=bucket,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            dynamodb_endpoint=env.get("FMA_DYNAMODB_ENDPOINT") or env.get("AWS_ENDPOINT_URL_DYNAMODB"),
            s3_endpoint=env.get("FMA_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3"),
            aggregate_function=env.get("FMA_AGGREGATE_FUNCTION"), limits=limits,
        )


def _int(env: os._Environ | dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive")
    return value
