"""Given-helpers of the service tests: the memory connector, a clock the test moves, a world."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fma.adapters.invoker import RecordingInvoker
from fma.adapters.memory import MemoryRepository
from fma.domain.auth import Principal, Role, hash_token
from fma.domain.codec import encode
from fma.services import experiments, participation
from fma.services.deps import Deps, model_key, update_key
from fma.services.ingest import ingest_object

T0 = 1_800_000_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


def update_file(tensors: dict[str, np.ndarray], num_examples: int | None = 10, round_: int | None = None,
                metrics: dict | None = None) -> bytes:
    import json

    meta = {} if num_examples is None else {"fma.num_examples": str(num_examples)}
    if round_ is not None:
        meta["fma.round"] = str(round_)
    if metrics is not None:
        meta["fma.metrics"] = json.dumps(metrics)
    return encode(tensors, meta)


@dataclass
class World:
    """Given-helpers: a developer, an experiment with its model ingested, enrolled clients."""

    deps: Deps
    clock: Clock
    invoker: RecordingInvoker
    dev: Principal = field(default_factory=lambda: Principal(Role.DEVELOPER, "dev-1"))

    @property
    def repo(self) -> MemoryRepository:
        return self.deps.repo  # type: ignore[return-value]

    def experiment(self, initial: dict[str, np.ndarray] | None = None, **rounds) -> str:
        body = {"name": "exp", "rounds": {"min_updates": 2, "total_rounds": 2} | rounds}
        exp_id = experiments.create_experiment(self.deps, self.dev, body)["experiment"]["id"]
        initial = initial if initial is not None else {"w": np.zeros(3, np.float32)}
        experiments.put_initial_model(self.deps, self.dev, exp_id, encode(initial))
        assert ingest_object(self.deps, model_key(exp_id, 0)).status == "activated"
        return exp_id

    def clients(self, exp_id: str, count: int) -> list[Principal]:
        token = experiments.create_enrollment_token(self.deps, self.dev, exp_id, {"max_uses": count})["token"]
        enroll = Principal(Role.ENROLLMENT, "enroll", exp_id, hash_token(token))
        made = [experiments.register_client(self.deps, enroll, exp_id, {}) for _ in range(count)]
        # a client's writes re-check its token (access.require_live_client), so the principal carries its hash
        return sorted((Principal(Role.CLIENT, r["client_id"], exp_id, hash_token(r["token"])) for r in made),
                      key=lambda p: p.principal_id)

    def submit(self, exp_id: str, client: Principal, n: int, tensors: dict[str, np.ndarray], examples: int = 10):
        participation.put_update(self.deps, client, exp_id, n, update_file(tensors, examples, n))
        return ingest_object(self.deps, update_key(exp_id, n, client.principal_id))
