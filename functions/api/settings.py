"""Settings of the api function: exactly what it reads at cold start (its construct sets these)."""

from __future__ import annotations

from fma.adapters import settings as s

SETTINGS = s.FunctionSettings("api", (
    s.TABLE_NAME, s.BUCKET_NAME, s.CORS_ORIGIN, s.STRATEGY_MODULES,
    s.PRESIGN_SECONDS, s.DIRECT_UPLOAD_MAX_BYTES, s.MAX_UPDATE_BYTES, s.RECONCILE_GRACE_SECONDS,
    s.POLL_RETRY_AFTER_SECONDS, s.LEASE_SECONDS, s.CLIENT_TOKEN_MAX_SECONDS, s.CLIENT_TOKEN_GRACE_SECONDS,
    s.DEFAULT_EXPECTED_CLIENTS, s.MULTIPART_THRESHOLD_BYTES, s.MULTIPART_PART_BYTES, s.POINTER_BASE_URL,
    *s.LOGGER,
))
#: the dashboard origin CORS admits when none is configured (local mode's gateway).
LOCAL_ORIGIN = "http://127.0.0.1:8080"


def load_settings() -> s.Settings:
    return SETTINGS.load()


def cors_origin() -> str:
    """The dashboard's origin; read alone so that building the app at import needs no table."""
    return s.read_one(s.CORS_ORIGIN, SETTINGS) or LOCAL_ORIGIN
