"""Settings of the sweeper function: exactly what it reads (its construct sets these).

The sweeper seals at deadlines and re-invokes (the lease), retries aggregation, reconciles lost
uploads through the ingest service (grace period, lease) and bounds retries of failing items.
"""

from __future__ import annotations

from fma.adapters import settings as s

SETTINGS = s.FunctionSettings("sweeper", (
    s.TABLE_NAME, s.BUCKET_NAME, s.AGGREGATE_FUNCTION, s.LEASE_SECONDS, s.MAX_AGGREGATION_ATTEMPTS,
    s.RECONCILE_GRACE_SECONDS, s.MAX_INGEST_ATTEMPTS, s.FANOUT_STATE_MACHINE, s.FANOUT_MIN_UPDATES,
    s.FANOUT_MIN_BYTES, s.FANOUT_SINGLE_MAX_MODEL_BYTES, *s.LOGGER_AND_METRICS,
))


def load_settings() -> s.Settings:
    return SETTINGS.load()
