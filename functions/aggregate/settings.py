"""Settings of the aggregate function: exactly what it reads (its construct sets these)."""

from __future__ import annotations

from fma.adapters import settings as s

SETTINGS = s.FunctionSettings("aggregate", (
    s.TABLE_NAME, s.BUCKET_NAME, s.STRATEGY_MODULES, s.LEASE_SECONDS, s.DP_SECRET_ARN, s.READ_CONCURRENCY,
    *s.LOGGER_AND_METRICS,
))


def load_settings() -> s.Settings:
    return SETTINGS.load()
