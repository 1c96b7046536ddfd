"""Settings of the ingest function: exactly what it reads (its construct sets these).

Ingest seals rounds (the lease), defers uploads of a paused experiment (the grace period) and
bounds its retries of a failing record.
"""

from __future__ import annotations

from fma.adapters import settings as s

SETTINGS = s.FunctionSettings("ingest", (
    s.TABLE_NAME, s.BUCKET_NAME, s.AGGREGATE_FUNCTION,
    s.LEASE_SECONDS, s.RECONCILE_GRACE_SECONDS, s.MAX_INGEST_ATTEMPTS, s.FANOUT_STATE_MACHINE,
    s.FANOUT_MIN_UPDATES, s.FANOUT_MIN_BYTES, s.FANOUT_SINGLE_MAX_MODEL_BYTES, *s.LOGGER_AND_METRICS,
))


def load_settings() -> s.Settings:
    return SETTINGS.load()
