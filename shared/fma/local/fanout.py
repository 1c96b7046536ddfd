"""Local mode's fanout executor: the state machine of infra/constructs/aggregation.py, run here.

start -> reduce -> (Map: every piece of the pass, through the aggregate_piece handler, each
retried with backoff) -> reduce -> ... -> published; a piece that fails for good, or a reduce
that keeps failing, hands the round to the `fail` task (the round FAILED with the reason), as
the state machine's catch does. The tasks are the very handlers Step Functions invokes; the
pieces run in a pool of worker processes (`Workers.fanout_pool`) or of threads.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fma.local import dispatch

log = logging.getLogger("fma.local")
Task = Callable[[dict[str, Any]], dict[str, Any]]


class LocalFanout:
    """A FanoutStarter: `start` queues a round (one at a time, in order); `run` runs one now."""

    def __init__(self, submit_piece: Callable[[dict[str, Any]], Future] | None = None, *,
                 run_task: Task = dispatch.run_aggregate, run_piece: Task = dispatch.run_aggregate_piece,
                 retries: int = 2, backoff_seconds: float = 0.2) -> None:
        """`submit_piece(item)` runs a Map item somewhere (Workers.submit_piece: a process
        pool); without it, `run_piece` runs on two threads here."""
        self._threads: ThreadPoolExecutor | None = None
        if submit_piece is None:
            self._threads = ThreadPoolExecutor(2, thread_name_prefix="fma-fanout-piece")
            submit_piece = functools.partial(self._threads.submit, run_piece)
        self.submit_piece, self.run_task = submit_piece, run_task
        self.retries, self.backoff = retries, backoff_seconds
        self.jobs = ThreadPoolExecutor(1, thread_name_prefix="fma-fanout")

    def start(self, experiment_id: str, n: int) -> None:
        self.jobs.submit(self._run_logged, experiment_id, n)

    def _run_logged(self, experiment_id: str, n: int) -> None:
        try:
            log.info("fanout %s/%s -> %s", experiment_id, n, self.run(experiment_id, n).get("status"))
        except Exception:  # the sweeper finds the round again when its lease expires
            log.exception("fanout %s/%s failed", experiment_id, n)

    def run(self, experiment_id: str, n: int) -> dict[str, Any]:
        """One execution: the name is the lease owner, as $$.Execution.Name is on AWS."""
        base = {"experiment_id": experiment_id, "round": n}
        owner = f"local-{uuid.uuid4().hex[:12]}"
        out = self._task({**base, "task": "start", "owner": owner})
        if out.get("status") != "started":
            return out
        complete, started, spent = 0, out["started_at"], out.get("spent")
        while True:
            try:
                out = self._task({**base, "task": "reduce", "owner": owner, "complete": complete,
                                  "started_at": started, "spent": spent})
            except Exception as exc:
                return self.run_task({**base, "task": "fail", "error": _error(exc, "reduce")})
            if out.get("status") != "map":
                return out
            error = self._map([{**base, "pass": out["pass"], "piece": i} for i in range(out["pieces"])])
            if error is not None:
                return self.run_task({**base, "task": "fail", "error": error})
            complete, spent = out["next_complete"], out.get("spent")

    def _task(self, event: dict[str, Any]) -> dict[str, Any]:
        return _retrying(lambda: self.run_task(event), self.retries, self.backoff)

    def _map(self, items: list[dict[str, Any]]) -> dict[str, str] | None:
        """Every item, `retries` more times each after a failure (backoff doubling); the first
        item that fails for good is the Map's failure (tolerated failures: none)."""
        pending = items
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            futures: list[tuple[dict[str, Any], Future]] = [
                (i, self.submit_piece(i)) for i in pending]
            failed: list[tuple[dict[str, Any], BaseException]] = []
            for item, future in futures:
                exc = future.exception()
                if exc is not None:
                    log.warning("fanout piece %s attempt %d failed: %s", item, attempt + 1, exc)
                    failed.append((item, exc))
            if not failed:
                return None
            pending = [item for item, _ in failed]
        item, exc = failed[0]
        return _error(exc, f"piece {item['piece']} of pass {item['pass']} after {self.retries + 1} attempts")

    def shutdown(self) -> None:
        self.jobs.shutdown(wait=True)
        if self._threads is not None:
            self._threads.shutdown(wait=True)


def _retrying(fn: Callable[[], dict[str, Any]], retries: int, backoff: float) -> dict[str, Any]:
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception:
            if attempt == retries:
                raise
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _error(exc: BaseException, where: str) -> dict[str, str]:
    """The shape of a Step Functions catch's error output."""
    return {"Error": type(exc).__name__, "Cause": f"{where}: {exc}"[:400]}
