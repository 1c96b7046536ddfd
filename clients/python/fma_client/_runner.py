"""`Client.run`: the federated loop around the user's training function.

get model -> (stop when the round is None) -> train -> submit -> wait for the round -> repeat.
The loop keeps going through the ordinary races of a shared experiment: a pause (wait and
retry), a round sealed before our update landed (LATE, ROUND_CLOSED) or a repeated submit
(ALREADY_SUBMITTED): those move on to the next model instead of failing the client.

In async mode (the model response says `"mode": "async"`) there is no quota to wait for: after
an accepted update the loop goes straight on with the newest model, waiting only until a
version newer than the one it trained on is out (one update in flight per base version); an
update refused STALE (its base too many versions old) is recorded and the loop goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fma_client._contract import check_train_result
from fma_client.errors import Conflict, ExperimentEnded, Gone, Timeout, UpdateRejected

if TYPE_CHECKING:
    from fma_client.client import Client
    from fma_client.tensors import Weights

log = logging.getLogger("fma_client")
Json = dict[str, Any]
ENDED = ("STOPPED", "FAILED", "COMPLETED")
SKIP_CODES = ("ROUND_CLOSED", "ALREADY_SUBMITTED")
FAILED_RESENDS = 2
TrainFn = Callable[["Weights", dict[str, Any]], tuple[Any, int, Any]]


def run_loop(
    client: Client, train_fn: TrainFn, rounds: int | None, round_timeout: float,
    update_timeout: float,
) -> list[Json]:  # fmt: skip
    """One history entry per round taken part in: round, status, counts and metrics."""
    history: list[Json] = []
    done = 0
    while rounds is None or len(history) < rounds:
        model = _next_model(client, done)
        if model is None:
            break
        weights, n, config = model
        log.info("round %d: training", n)
        shapes = {name: np.shape(value) for name, value in weights.items()}  # before train_fn may edit them
        new_weights, num_examples, metrics = check_train_result(train_fn(weights, config), shapes)
        try:
            entry = _submit(client, n, new_weights, num_examples, metrics, update_timeout)
        except ExperimentEnded:
            break
        if entry is None:
            continue
        if client.model is not None and client.model.mode == "async":
            history.append(entry)
            done = n
            continue
        try:
            published = _await_round(client, n, round_timeout)
        except ExperimentEnded:
            history.append(entry)
            break
        entry["round_metrics"] = published.get("metrics")
        history.append(entry)
        log.info("round %d: %s, published", n, entry["status"])
        done = n
    return history


def _next_model(client: Client, done: int) -> tuple[Weights, int, dict[str, Any]] | None:
    """Wait for a RUNNING round after `done`; None once the experiment is over.

    Polls back off (with jitter) from `poll_interval` to five times it, or follow the server's
    Retry-After hint, so a long pause does not cost a request every two seconds per client.
    """
    last_wait: tuple[str, int | None] | None = None
    delay = client.poll_interval
    while True:
        try:
            weights, n, config = client.get_model()
        except Conflict as exc:  # no model yet, or a server that answers 409 while paused
            if exc.code != "MODEL_NOT_READY" and "PAUSED" not in (exc.code or ""):
                raise
            log.info("model not available yet (%s); waiting", exc.code)
        else:
            status = client.model.status if client.model else "RUNNING"
            if n is None or status in ENDED:
                return None
            if status == "RUNNING" and n > done:
                return weights, n, config
            if last_wait != (status, n):  # log state changes, not every poll
                log.info("experiment %s, round %s: waiting", status, n)
                last_wait = (status, n)
        if client.wait_for_model_change():  # the pointer changed (or the API fallback is due)
            client.invalidate_model()
            continue
        client.invalidate_model()
        client.waiter.pause(delay)
        delay = client.waiter.grow(delay, 5 * client.poll_interval)


def _submit(
    client: Client, n: int, weights: Any, num_examples: int, metrics: Mapping[str, Any] | None,
    timeout: float,
) -> Json | None:  # fmt: skip
    """Submit and wait for validation; None when the experiment moved and we must re-fetch."""
    entry: Json = {"round": n, "num_examples": num_examples, "metrics": dict(metrics or {})}
    try:
        result = _send(client, n, weights, num_examples, metrics, timeout)
    except UpdateRejected as exc:
        if exc.status == "REJECTED" and (exc.reason or "").startswith("STALE"):
            log.warning("round %d: update refused as too stale (%s); going on with the newest model", n, exc.reason)
            return {**entry, "status": "REJECTED", "reason": exc.reason}
        if exc.status != "LATE":
            raise
        log.warning("round %d: update arrived after the seal (LATE)", n)
        return {**entry, "status": "LATE", "reason": exc.reason}
    except Gone as exc:  # EXPERIMENT_CLOSED: stopped or finished while we trained
        raise ExperimentEnded(client.experiment_id, exc.code or "GONE") from exc
    except Conflict as exc:
        if exc.code in SKIP_CODES:
            log.warning("round %d: %s, moving on", n, exc.code)
            return {**entry, "status": exc.code, "reason": exc.message}
        # Paused or stopped between get_model and submit? If nothing moved, it is a real error.
        now = client.peek()
        if now.get("status", "RUNNING") == "RUNNING" and now.get("round") == n:
            raise
        return None
    return {**entry, "status": result["status"], "update_id": result.get("update_id")}


def _send(
    client: Client, n: int, weights: Any, num_examples: int, metrics: Mapping[str, Any] | None, timeout: float
) -> Json:
    """`client.submit`, sending again (at most FAILED_RESENDS times) an update the server FAILED
    to ingest: a fault on its side after its own retries, which the contract lets us resend."""
    for attempt in range(FAILED_RESENDS + 1):
        try:
            return client.submit(weights, num_examples, metrics, round=n, timeout=timeout)
        except UpdateRejected as exc:
            if exc.status != "FAILED" or attempt == FAILED_RESENDS:
                raise
            log.warning("round %d: the server failed to ingest the update (%s); sending it again", n, exc.reason)
    raise AssertionError("unreachable")  # pragma: no cover


def _await_round(client: Client, n: int, timeout: float) -> Json:
    """`wait_for_round`, except that a paused experiment does not count against the timeout."""
    while True:
        try:
            return client.wait_for_round(n, timeout)
        except Timeout:
            if client.peek().get("status") != "PAUSED":
                raise
            log.info("round %d: experiment paused; still waiting", n)
