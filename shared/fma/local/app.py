"""`fma local up`: the whole stack in one process on loopback, with the Lambda handlers."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fma.adapters.factory import build_deps, set_invoker_override
from fma.adapters.settings import Settings
from fma.domain.auth import Role, hash_token, new_token
from fma.domain.records import TokenRecord
from fma.local import dispatch
from fma.local.emulation import Emulation, start_emulation
from fma.local.gateway import Gateway
from fma.local.workers import IngestPump, ThreadInvoker, Timer


@dataclass
class LocalStack:
    host: str = "127.0.0.1"
    port: int = 8080
    state_dir: Path = Path(".fma")
    sweep_seconds: float = 5.0
    ephemeral: bool = False
    admin_token: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)

    def start(self) -> LocalStack:
        if not self.host.startswith("127.") and self.host not in ("localhost", "::1"):
            raise ValueError("local mode binds to loopback addresses only")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.emulation: Emulation = start_emulation(self.host, None if self.ephemeral else self.state_dir)
        # The DP noise key: a 0600 file that only this process reads (services/dp_noise.py).
        os.environ.setdefault("FMA_DP_SECRET_FILE", str(self.state_dir.resolve() / "dp-noise.key"))
        self.invoker = ThreadInvoker()
        set_invoker_override(self.invoker)
        dispatch.reset_handler_caches()
        self.admin_token = self._ensure_admin_token()
        self.pump = IngestPump(self.emulation.endpoint, self.emulation.queue_url, self.stop_event)
        self.pump.start()
        self.sweeper = Timer(self.sweep_seconds, self._sweep, self.stop_event, "fma-sweeper")
        self.sweeper.start()
        self.gateway = Gateway(self.host, self.port)
        self.gateway.start()
        return self

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
        path.write_text(token + "\n")
        path.chmod(0o600)
        return token

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
        self.emulation.stop()
