"""Which plan a sealed round takes (auto thresholds, forced plans) and where it is started."""

from __future__ import annotations

import pytest

from fma.adapters.invoker import RecordingInvoker
from fma.domain.aggregation_config import AggregationSettings, FanoutThresholds, choose_plan, parse_aggregation
from fma.domain.errors import InvalidInput
from fma.domain.experiment import Experiment, RoundPolicy
from fma.domain.records import RoundRecord
from fma.domain.states import RoundState
from fma.services.plan_router import PlanRouter, model_bytes

T = FanoutThresholds(min_updates=100, min_bytes=1 << 30, single_max_model_bytes=64 << 20)
MB4 = 4 << 20


@pytest.mark.parametrize(("plan", "k", "size", "available", "expected"), [
    ("auto", 10, MB4, True, "single"),
    ("auto", 100, 1, True, "fanout"),          # K reaches min_updates
    ("auto", 99, 11 << 20, True, "fanout"),    # 99 x 11 MB passes 1 GiB
    ("auto", 99, 10 << 20, True, "single"),
    ("auto", 2, (64 << 20) + 1, True, "fanout"),  # a model the single function cannot hold, K = 2
    ("auto", 2, 64 << 20, True, "single"),
    ("single", 10_000, MB4, True, "single"),
    ("fanout", 2, 1, True, "fanout"),
    ("fanout", 2, 1, False, "single"),          # no executor deployed: the single plan (same bytes)
])
def test_choose_plan(plan, k, size, available, expected):
    assert choose_plan(AggregationSettings(plan=plan), k, size, T, available) == expected


def test_parse_aggregation_defaults_and_refusals():
    assert parse_aggregation(None) == AggregationSettings()
    assert parse_aggregation({"plan": "fanout", "shard_bytes": 1 << 20}).shard_bytes == 1 << 20
    for bad in ({"plan": 1}, {"partition_updates": True}, {"partition_updates": 10**9}, {"shard_bytes": 1},
                {"x": 1}, "fanout"):
        with pytest.raises(InvalidInput):
            parse_aggregation(bad)


class Repo:
    def __init__(self, exp: Experiment, accepted: int):
        self.exp, self.accepted = exp, accepted

    def get_experiment(self, experiment_id):
        return self.exp if experiment_id == self.exp.id else None

    def get_round(self, experiment_id, n):
        return RoundRecord(experiment_id, n, RoundState.SEALED, accepted=self.accepted)


class Starter:
    def __init__(self):
        self.started = []

    def start(self, experiment_id, n):
        self.started.append((experiment_id, n))


def _exp(plan: str) -> Experiment:
    return Experiment("e1", "x", "dev", "fedavg", {}, RoundPolicy(), aggregation=AggregationSettings(plan=plan),
                      model_spec=[{"name": "w", "dtype": "F32", "shape": [1024, 1024]},
                                  {"name": "b", "dtype": "BF16", "shape": [8]}])


def test_model_bytes_from_the_spec():
    assert model_bytes(_exp("auto")) == 4 * 1024 * 1024 + 16


@pytest.mark.parametrize(("plan", "accepted", "routed"), [("auto", 5, "invoke"), ("auto", 300, "start"),
                                                          ("fanout", 2, "start"), ("single", 300, "invoke")])
def test_the_router_starts_fanout_rounds_and_invokes_the_others(plan, accepted, routed):
    invoker, starter = RecordingInvoker(), Starter()
    router = PlanRouter(invoker, starter, Repo(_exp(plan), accepted), T)
    router.invoke_async({"experiment_id": "e1", "round": 3})
    assert (starter.started, invoker.calls) == (
        ([("e1", 3)], []) if routed == "start" else ([], [{"experiment_id": "e1", "round": 3}]))


def test_a_deployment_fans_out_models_above_its_single_limit_from_its_settings():
    from fma.adapters.settings import FANOUT_SINGLE_MAX_MODEL_BYTES, TABLE_NAME, Settings
    from fma.services.plan_router import fanout_thresholds

    # Given an ingest function told the single function holds models of at most 4 MiB
    settings = Settings.from_env(env={TABLE_NAME: "t", FANOUT_SINGLE_MAX_MODEL_BYTES: str(4 << 20)},
                                 need_bucket=False)
    invoker, starter = RecordingInvoker(), Starter()
    router = PlanRouter(invoker, starter, Repo(_exp("auto"), 2), fanout_thresholds(settings.limits))
    # When a round of 2 updates of a 4 MiB + 16 B model seals
    router.invoke_async({"experiment_id": "e1", "round": 1})
    # Then it fans out, though K and K x bytes are far below the other thresholds
    assert starter.started == [("e1", 1)] and invoker.calls == []
    assert fanout_thresholds(Settings.from_env(env={TABLE_NAME: "t"}, need_bucket=False).limits) \
        .single_max_model_bytes == 688 << 20
