"""aggregate_piece function: one Map item of the fanout state machine,
{"experiment_id", "round", "pass", "piece"} -> one partial object under partials/.

A failure raises: the state machine retries the item with backoff, then hands the round to
the failure path (services/fanout.py). A retry writes the same bytes to the same key.
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger

from aggregate_piece.settings import load_settings
from fma.adapters.factory import build_deps
from fma.services import fanout
from fma.services.deps import Deps

logger = Logger()


@functools.cache
def deps() -> Deps:
    return build_deps(load_settings())


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    result = fanout.run_task(deps(), {**event, "task": "piece"})
    logger.info("piece finished", extra=result)
    return result
