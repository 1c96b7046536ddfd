"""Services on the memory connector: no moto, no HTTP, a clock the test moves (milliseconds)."""

from __future__ import annotations

import pytest

from fma.adapters.invoker import RecordingInvoker
from fma.adapters.memory import MemoryModelStore, MemoryRepository
from fma.services.deps import Deps, Limits

from .service_world import Clock, World


@pytest.fixture
def world() -> World:
    clock, invoker = Clock(), RecordingInvoker()
    deps = Deps(repo=MemoryRepository(), store=MemoryModelStore(), invoker=invoker,
                limits=Limits(lease_seconds=60, reconcile_grace_seconds=30), clock=clock)
    return World(deps, clock, invoker)
