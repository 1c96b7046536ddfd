"""Which plan aggregates a sealed round, and the invoker that starts it.

Ingest (at the seal) and the sweeper (a lost or expired aggregation) call `invoke_async` with
`{"experiment_id", "round"}`. `PlanRouter` stands in for the plain async invoker when the
deployment has a fanout executor: a round whose plan resolves to fanout starts the state
machine (or the local executor) instead. The plan never changes the bytes, so a round that
reaches the single aggregate function anyway (an operator, a resume) publishes the same model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from fma.domain.aggregation_config import FanoutThresholds, choose_plan
from fma.domain.experiment import Experiment
from fma.services.deps import Limits
from fma.services.ports import Invoker, MetadataStore

#: bytes per element of each safetensors dtype (numpy-free: ingest and the API import this).
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


class FanoutStarter(Protocol):
    """Starts one fanout run of a round (a Step Functions execution, a local executor job)."""

    def start(self, experiment_id: str, n: int) -> None: ...


def model_bytes(exp: Experiment) -> int:
    """The model's size from its spec (an update has the model's tensors)."""
    return sum(math.prod(t["shape"]) * DTYPE_BYTES.get(t["dtype"], 8) for t in exp.model_spec or [])


def fanout_thresholds(limits: Limits) -> FanoutThresholds:
    """The auto plan's thresholds from the deployment's limits."""
    return FanoutThresholds(limits.fanout_min_updates, limits.fanout_min_bytes, limits.fanout_single_max_model_bytes)


def plan_for(exp: Experiment, accepted: int, thresholds: FanoutThresholds, fanout_available: bool) -> str:
    return choose_plan(exp.aggregation, accepted, model_bytes(exp), thresholds, fanout_available)


class PlanRouter:
    """An Invoker: fanout rounds go to `starter`, the others to the async `invoker`."""

    def __init__(self, invoker: Invoker | None, starter: FanoutStarter, repo: MetadataStore,
                 thresholds: FanoutThresholds) -> None:
        self.invoker, self.starter, self.repo, self.thresholds = invoker, starter, repo, thresholds

    def invoke_async(self, payload: Mapping[str, Any]) -> None:
        experiment_id, n = payload["experiment_id"], payload["round"]
        exp = self.repo.get_experiment(experiment_id)
        rnd = self.repo.get_round(experiment_id, n)
        if exp is not None and rnd is not None and plan_for(exp, rnd.accepted, self.thresholds, True) == "fanout":
            self.starter.start(experiment_id, n)
        elif self.invoker is not None:
            self.invoker.invoke_async(payload)

    def shutdown(self) -> None:
        """Local mode stops its invokers; the router passes that on."""
        for part in (self.invoker, self.starter):
            stop = getattr(part, "shutdown", None)
            if stop is not None:
                stop()
