"""`fma local up`: the whole stack on loopback, running the Lambda handlers.

Backends: `sqlite_fs` (the default: SQLite + files under the state directory, durable across
crashes) and `aws-emulation` (moto's server, for AWS-fidelity runs). Either way clients reach
only the gateway: the API, and model data through signed single-object grants.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fma.adapters.factory import build_deps, set_connector_override, set_invoker_override
from fma.adapters.settings import Settings
from fma.domain.auth import Role, hash_token, new_token
from fma.domain.records import TokenRecord
from fma.domain.states import RoundState
from fma.local import dispatch
from fma.local.emulation import BUCKET, Emulation, local_environment, start_emulation
from fma.local.fanout import LocalFanout
from fma.local.gateway import Gateway
from fma.local.objects import GrantingStore, ObjectRoutes
from fma.local.pool import Workers, WorkerSetup
from fma.local.workers import IngestPump, ThreadInvoker, Timer
from fma.services.plan_router import PlanRouter, fanout_thresholds
from fma.services.ports import ObjectEvents

BACKENDS = ("sqlite_fs", "aws-emulation")


@dataclass
class LocalStack:
    host: str = "127.0.0.1"
    port: int = 8080
    state_dir: Path = Path(".fma")
    sweep_seconds: float = 5.0
    ephemeral: bool = False
    backend: str = "sqlite_fs"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    admin_token: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)

    def start(self) -> LocalStack:
        if not self.host.startswith("127.") and self.host not in ("localhost", "::1"):
            raise ValueError("local mode binds to loopback addresses only")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        os.umask(0o077)  # every file local mode writes (token, database, objects) is 0600, every folder 0700
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(self.state_dir)
        # The DP noise key: a 0600 file that only this process reads (services/dp_noise.py).
        os.environ.setdefault("FMA_DP_SECRET_FILE", str(self.state_dir.resolve() / "dp-noise.key"))
        self.gateway = Gateway(self.host, self.port)
        os.environ["FMA_POINTER_BASE_URL"] = self.gateway.url  # clients poll pointers at the gateway
        events, routes = self._sqlite_fs() if self.backend == "sqlite_fs" else self._aws_emulation()
        for name in dispatch.FUNCTION_NAMES:  # import once, here: threads importing at once can race
            dispatch.load_handler_module(name)
        self.pool: Workers | None = None
        if self.workers > 0:
            self.pool = Workers(self._worker_setup(routes.signer.secret), self.workers)
        self.invoker = self._router(self.pool or ThreadInvoker())
        set_invoker_override(self.invoker)
        dispatch.reset_handler_caches()
        self.admin_token = self._ensure_admin_token()
        self._resume_sealed_rounds()
        self.pump = IngestPump(events, BUCKET, self.stop_event,
                               self.pool.run_ingest_event if self.pool else dispatch.run_ingest_event)
        self.pump.start()
        self.sweeper = Timer(self.sweep_seconds, self._sweep, self.stop_event, "fma-sweeper")
        self.sweeper.start()
        self.gateway.start(routes, self.pool.call_api if self.pool else None)
        return self

    def _router(self, invoker: Any) -> PlanRouter:
        """Sealed rounds go through the plan router: fanout ones to the local executor (the
        same handlers the state machine runs; pieces in worker processes), others as before."""
        pool = self.pool
        fanout = LocalFanout(pool.submit_piece if pool else None,
                             run_task=pool.run_aggregate_task if pool else dispatch.run_aggregate)
        limits = Settings.from_env().limits
        router = PlanRouter(invoker, fanout, build_deps(Settings.from_env()).repo,
                            fanout_thresholds(limits))
        if pool is not None:
            pool.forward_to = router.invoke_async
        return router

    def _worker_setup(self, secret: bytes) -> WorkerSetup:
        env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "FMA_", "POWERTOOLS_"))}
        data_dir = str(getattr(self, "data_dir", self.state_dir))
        return WorkerSetup(self.backend, data_dir, self.gateway.url, secret, env)

    def _sqlite_fs(self) -> tuple[ObjectEvents, ObjectRoutes]:
        from fma.adapters.sqlite_fs import open_connector

        local_environment()
        self.data_dir = Path(tempfile.mkdtemp(prefix="fma-local-")) if self.ephemeral else self.state_dir
        self.connector = open_connector(self.data_dir, self.gateway.url)
        self.connector.events.release_all()  # events a crashed pump had received are due again now
        stores = (self.connector.repo, self.connector.store)
        set_connector_override(lambda _settings: stores)
        self.emulation: Emulation | None = None
        self.description = f"sqlite_fs in {'a temporary folder (--ephemeral)' if self.ephemeral else self.state_dir}"
        return self.connector.events, ObjectRoutes(self.connector.store, self.connector.signer)

    def _aws_emulation(self) -> tuple[ObjectEvents, ObjectRoutes]:
        import secrets

        from fma.adapters import aws
        from fma.adapters.sqlite_fs.grants import GrantSigner
        from fma.local.sqs_events import SqsObjectEvents

        self.connector = None
        self.emulation = start_emulation(self.host, None if self.ephemeral else self.state_dir)
        signer = GrantSigner(secrets.token_bytes(32))
        gateway_url = self.gateway.url

        def stores(settings: Settings):
            repo, s3 = aws.aws_stores(settings)
            return repo, GrantingStore(s3, signer, gateway_url)

        set_connector_override(stores)
        self.description = (f"aws-emulation (moto at {self.emulation.endpoint}, never given to clients; "
                            f"{self.emulation.replayed} recorded writes replayed)")
        store = stores(Settings.from_env())[1]
        return SqsObjectEvents(self.emulation.queue_url, self.emulation.endpoint), ObjectRoutes(store, signer)

    @property
    def url(self) -> str:
        return self.gateway.url

    def _ensure_admin_token(self) -> str:
        path = self.state_dir / "admin-token"
        saved = path.read_text().strip() if path.exists() else ""
        token = os.environ.get("FMA_ADMIN_TOKEN") or saved or new_token()
        repo = build_deps(Settings.from_env()).repo
        if repo.get_token(hash_token(token)) is None:
            principal = "admin-" + hashlib.sha256(token.encode()).hexdigest()[:12]
            repo.put_token(TokenRecord(hash_token(token), Role.ADMIN, principal, None, None, None, 0, False, "local"))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        path.chmod(0o600)
        return token

    def _resume_sealed_rounds(self) -> None:
        """A round sealed before a crash lost its in-process invocation: invoke it again now."""
        deps = build_deps(Settings.from_env())
        horizon = deps.clock() + 10 * deps.limits.lease_seconds
        for rnd in deps.repo.list_due(horizon, limit=1000):
            if rnd.state == RoundState.SEALED:
                self.invoker.invoke_async({"experiment_id": rnd.experiment_id, "round": rnd.round})

    def _sweep(self) -> None:
        module = dispatch.load_handler_module("sweeper")
        if hasattr(module, "handler"):
            module.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, dispatch.FakeContext("sweeper"))

    def stop(self) -> None:
        self.stop_event.set()
        self.gateway.stop()
        self.pump.join(timeout=5)
        self.sweeper.join(timeout=5)
        self.invoker.shutdown()
        set_invoker_override(None)
        set_connector_override(None)
        dispatch.reset_handler_caches()
        if self.emulation is not None:
            self.emulation.stop()
        if self.connector is not None:
            self.connector.close()
            if self.ephemeral:
                shutil.rmtree(self.data_dir, ignore_errors=True)


def _owner_only(state_dir: Path) -> None:
    """Tighten what an older version left behind: the state folder holds tokens and all data."""
    state_dir.chmod(0o700)
    for path in state_dir.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)
