"""Local mode's worker processes: the API and authorizer handlers run in a pool of processes
(the way Lambda runs concurrent environments, each with its own interpreter and cold start),
ingest and aggregation each in a process of their own, so no handler waits on another's GIL.

Workers are spawned (not forked: the parent runs threads and, on aws-emulation, moto's server)
and build their own connector from a `WorkerSetup`; SQLite in WAL mode is made for several
processes on one file. An ingest worker forwards its aggregate invocations to the parent, whose
aggregate worker runs them in order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fma.local import dispatch

log = logging.getLogger("fma.local")
#: processes computing fanout pieces (the Map's children) in local mode.
FANOUT_WORKERS = 2


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to rebuild the parent's connector."""

    backend: str
    data_dir: str
    public_url: str
    grant_secret: bytes
    environment: dict[str, str] = field(default_factory=dict)


class QueueInvoker:
    """In an ingest worker: hands aggregate invocations to the parent process."""

    def __init__(self, queue: Any):
        self.queue = queue

    def invoke_async(self, payload: Mapping[str, Any]) -> None:
        self.queue.put(dict(payload))


def install_connector(setup: WorkerSetup) -> None:
    """Point this process's handlers at the connector `setup` describes (also used in-process)."""
    from fma.adapters.factory import set_connector_override

    if setup.backend == "sqlite_fs":
        from fma.adapters.sqlite_fs import open_connector

        conn = open_connector(setup.data_dir, setup.public_url)
        stores = (conn.repo, conn.store)
        set_connector_override(lambda _settings: stores)
    else:
        from fma.adapters import aws
        from fma.adapters.sqlite_fs.grants import GrantSigner
        from fma.local.objects import GrantingStore

        signer = GrantSigner(setup.grant_secret)

        def stores_for(settings):
            repo, s3 = aws.aws_stores(settings)
            return repo, GrantingStore(s3, signer, setup.public_url)

        set_connector_override(stores_for)


def _exit_with_parent(parent: int) -> None:
    """A worker outlives nothing: when local mode dies (even by SIGKILL) its workers follow."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _init_worker(setup: WorkerSetup, invocations: Any | None) -> None:
    from fma.adapters.factory import set_invoker_override

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    os.environ.update(setup.environment)
    logging.getLogger().setLevel(logging.WARNING)
    install_connector(setup)
    set_invoker_override(QueueInvoker(invocations) if invocations is not None else None)
    for name in dispatch.FUNCTION_NAMES:
        dispatch.load_handler_module(name)


def _ready() -> int:
    return os.getpid()


class Workers:
    """The three pools; `call_api`, `run_ingest_event` and `invoke_async` are what local mode calls."""

    def __init__(self, setup: WorkerSetup, api_workers: int):
        ctx = multiprocessing.get_context("spawn")
        self.invocations = ctx.Queue()
        self.api = ProcessPoolExecutor(api_workers, ctx, initializer=_init_worker, initargs=(setup, None))
        self.ingest = ProcessPoolExecutor(1, ctx, initializer=_init_worker, initargs=(setup, self.invocations))
        self.aggregate = ProcessPoolExecutor(1, ctx, initializer=_init_worker, initargs=(setup, None))
        self.order = ThreadPoolExecutor(1, thread_name_prefix="fma-aggregate")
        warm = [self.api.submit(_ready) for _ in range(api_workers)] + [self.ingest.submit(_ready),
                                                                         self.aggregate.submit(_ready)]
        for future in warm:  # every worker imports its handlers before the gateway opens
            future.result(timeout=300)
        self.setup, self.ctx = setup, ctx
        self._fanout: ProcessPoolExecutor | None = None
        #: where forwarded invocations go (local mode points it at its PlanRouter).
        self.forward_to = self.invoke_async
        self.forwarder = threading.Thread(target=self._forward, name="fma-invocations", daemon=True)
        self.forwarder.start()

    def call_api(self, method: str, path: str, headers: dict[str, str], body: bytes | None,
                 query: dict[str, str] | None) -> dispatch.HttpResult:
        return self.api.submit(dispatch.call_api, method, path, headers, body, query).result()

    def run_ingest_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.ingest.submit(dispatch.run_ingest_event, event).result()

    def invoke_async(self, payload: Mapping[str, Any], retries: int = 2) -> None:
        self.order.submit(self._aggregate, dict(payload), retries)

    def _aggregate(self, payload: dict[str, Any], retries: int) -> None:
        for attempt in range(retries + 1):
            try:
                result = self.aggregate.submit(dispatch.run_aggregate, payload).result()
                log.info("aggregate %s -> %s", payload, result.get("status"))
                return
            except Exception:
                log.exception("aggregate attempt %d failed for %s", attempt + 1, payload)

    def run_aggregate_task(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A fanout coordinator task (start, reduce, fail) in the aggregate worker."""
        return self.aggregate.submit(dispatch.run_aggregate, payload).result()

    def submit_piece(self, payload: dict[str, Any]) -> Any:
        """A fanout Map item in the pool of piece workers (spawned on first use: a deployment
        that never fans out never pays for their start)."""
        if self._fanout is None:
            self._fanout = ProcessPoolExecutor(FANOUT_WORKERS, self.ctx, initializer=_init_worker,
                                               initargs=(self.setup, None))
        return self._fanout.submit(dispatch.run_aggregate_piece, payload)

    def _forward(self) -> None:
        while True:
            payload = self.invocations.get()
            if payload is None:
                return
            self.forward_to(payload)

    def shutdown(self) -> None:
        self.invocations.put(None)
        self.forwarder.join(timeout=5)
        self.order.shutdown(wait=True)
        for pool in (self.api, self.ingest, self.aggregate, self._fanout):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
