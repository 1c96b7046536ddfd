"""Settings of the authorizer function: exactly what it reads (its construct sets these)."""

from __future__ import annotations

from fma.adapters import settings as s

SETTINGS = s.FunctionSettings("authorizer", (s.TABLE_NAME, s.CLIENT_TOKEN_GRACE_SECONDS, *s.LOGGER))


def load_settings() -> s.Settings:
    return SETTINGS.load()
