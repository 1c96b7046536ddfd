"""Settings of the aggregate_piece function: exactly what it reads (its construct sets these).

A fanout child reads the round's plan, the global model, its state and byte ranges of updates,
and writes one partial object; it holds no DP key and writes nothing to the table.
"""

from __future__ import annotations

from fma.adapters import settings as s

SETTINGS = s.FunctionSettings("aggregate_piece", (
    s.TABLE_NAME, s.BUCKET_NAME, s.STRATEGY_MODULES, s.READ_CONCURRENCY, *s.LOGGER,
))


def load_settings() -> s.Settings:
    return SETTINGS.load()
