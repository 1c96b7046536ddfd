"""The scale model's mechanics (benchmarks/scalemodel): token buckets, transaction conflicts,
Lambda concurrency, and ingest's way to FAILED or the DLQ, on small deterministic cases."""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))  # last: only scalemodel is wanted

from scalemodel.buckets import Backoff, Buckets, Concurrency, Items, transact
from scalemodel.limits import Limits, sampled
from scalemodel.plan import Plan, Step
from scalemodel.sim import Result, Simulation

KEY = ("rcu", "table", "EXP#{exp}", "", 1)


def test_a_bucket_serves_its_rate_per_tick_and_the_share_it_served_is_the_next_ticks_chance():
    b = Buckets(1.0, rate=lambda r: 10.0)
    assert b.ok(KEY) == 1.0  # never asked: served
    b.ask(KEY, 15)
    b.roll()
    assert b.ok(KEY) == pytest.approx(10 / 15)
    b.ask(KEY, 5)
    b.roll()
    assert b.ok(KEY) == 1.0  # no credit carried over: a tick's refill only


def test_a_burst_is_credit_that_unused_capacity_refills():
    b = Buckets(1.0, rate=lambda r: 10.0, burst=lambda r: 30.0)
    b.ask(KEY, 40)
    b.roll()  # starts full: 30 tokens (the burst), refilled to 30 at most
    assert b.ok(KEY) == pytest.approx(30 / 40)
    b.roll()  # an idle tick refills 10
    b.ask(KEY, 20)
    b.roll()  # 10 + 10 refilled
    assert b.ok(KEY) == pytest.approx(1.0)
    b.ask(KEY, 20)
    b.roll()
    assert b.ok(KEY) == pytest.approx(10 / 20)


def test_a_resource_without_capacity_serves_nothing():
    b = Buckets(1.0, rate=lambda r: 0.0)
    assert b.ok(KEY) == 0.0
    b.ask(KEY, 1)
    b.roll()
    assert b.ok(KEY) == 0.0


def test_a_write_inside_a_transactions_hold_conflicts_and_one_after_it_does_not():
    items = Items(window=0.02)
    assert items.free_at(["META"], 1.0)
    items.hold(["META"], 1.0)
    assert not items.free_at(["META"], 1.01)
    assert not items.free_at(["META", "other"], 0.99)  # its window reaches into the hold
    assert items.free_at(["META"], 1.02)
    assert items.free_at(["other"], 1.01)


def test_holds_ahead_of_the_clock_and_the_gaps_before_them_are_both_kept():
    """A retry after a sleep holds an item ahead of the clock; a write in the gap before that hold
    is free, and its own hold then makes a third write in the same gap conflict."""
    items = Items(window=0.02)
    items.hold(["META"], 10.05)
    assert items.free_at(["META"], 10.02)  # its window ends at 10.04, before the hold
    items.hold(["META"], 10.02)
    assert not items.free_at(["META"], 10.03)
    assert not items.free_at(["META"], 10.04)  # would reach into the hold at 10.05
    assert items.free_at(["META"], 10.07)


def test_transact_retries_a_conflict_with_its_sleeps_and_gives_up_after_its_attempts():
    items = Items(window=0.02)
    items.hold(["ROUND"], 0.0)
    took, conflicts = transact(items, ["ROUND"], 0.0, Backoff(attempts=1), rng=random.Random(1))
    assert (took, conflicts) == (None, 1)
    took, conflicts = transact(items, ["ROUND"], 0.0, Backoff(attempts=8), rng=random.Random(1))
    assert took is not None and took >= 0.0 and conflicts >= 1
    assert not items.free_at(["ROUND"], took)  # the winner holds the item now


def test_the_backoff_of_each_design_draws_its_sleeps_where_its_code_does():
    rng = random.Random(3)
    old, new = Backoff(), Backoff(attempts=6, base=0.05, cap=1.0, low=0.5)
    assert all(0.0 <= old.sleep(a, rng) <= 0.02 * 2 ** a for a in range(8))
    assert all(0.025 * 2 ** a <= new.sleep(a, rng) <= 0.05 * 2 ** a for a in range(4))
    assert all(0.5 <= new.sleep(a, rng) <= 1.0 for a in (5, 9))  # capped at 1 s


def test_lambda_concurrency_throttles_at_the_account_limit_and_counts_cold_starts():
    c = Concurrency(account=2)
    assert c.start("ingest", 0.0, 1.0, cold_seconds=2.0) == 3.0  # cold
    assert c.start("api", 0.0, 1.0, cold_seconds=0.5) == 1.5
    assert c.start("api", 0.5, 1.0, cold_seconds=0.5) is None  # account full
    assert c.start("api", 1.6, 1.0, cold_seconds=0.5) == 1.0  # warm again
    assert c.start("ingest", 3.5, 1.0, cold_seconds=2.0, cap=0) is None  # the function's maximum
    assert c.cold_starts == 2


def _plans(ingest: Plan, fail: Plan) -> dict[str, Plan]:
    empty = Plan([])
    return {"register": empty, "download": empty, "upload": empty, "poll": empty, "seal": empty,
            "ingest": ingest, "fail": fail}


def _failing() -> Plan:
    return Plan([Step("read", KEY, 1.0, 1)])


def test_an_ingest_that_keeps_failing_is_failed_after_max_ingest_attempts_when_the_mark_succeeds():
    limits = Limits(rcu_per_key=0.0, max_ingest_attempts=4, max_receive_count=5)
    res = Simulation(_plans(_failing(), Plan([])), limits, clients=1, window=1.0).run()
    assert (res.failed_updates, res.dlq, res.accepted, res.sealed_at) == (1, 0, 0, None)


def test_a_message_whose_ingest_and_failed_mark_keep_failing_reaches_the_dlq_after_max_receives():
    limits = Limits(rcu_per_key=0.0, max_ingest_attempts=4, max_receive_count=5)
    res = Simulation(_plans(_failing(), _failing()), limits, clients=1, window=1.0).run(horizon=10_000)
    assert (res.failed_updates, res.dlq, res.accepted) == (0, 1, 0)


def test_ingest_throttled_by_lambda_without_a_maximum_loses_receives_until_the_dlq():
    limits = Limits(lambda_account=0, max_receive_count=5)
    res = Simulation(_plans(Plan([]), Plan([])), limits, clients=1, window=1.0).run(horizon=10_000)
    assert res.dlq == 1 and res.throttled["lambda"] == 5


def test_with_a_maximum_concurrency_messages_wait_instead_of_spending_receives():
    limits = replace(Limits(lambda_account=1000), ingest_max_concurrency=1)
    res = Simulation(_plans(Plan([]), Plan([])), limits, clients=50, window=0.01).run()
    assert res.dlq == 0 and res.accepted == 50 and res.sealed_at is not None
    assert res.sealed_at >= 50 * 0.3  # one ingest at a time, 0.3 s each


def test_a_repeated_single_write_goes_round_the_shards_and_only_a_transaction_holds_its_item():
    shard = ("wcu", "table", "EXP#{exp}#N{k}", "ROUND#{n}", 4)
    close = Step("write", count=4, items=[(shard, 1, ("EXP#{exp}#N{k}", "ROUND#{n}"))])
    sim = Simulation(_plans(Plan([]), Plan([])), Limits(), clients=1, window=1.0)
    assert sim._write(0.0, close) and sim.items.busy == {} and sim.res.conflicted == 0
    assert sim._write(0.0, replace(close, txn=True, count=1)) and len(sim.items.busy) == 1


def test_a_sampled_run_scales_rates_and_stretches_the_conflict_window():
    s = sampled(Limits(), 0.1)
    assert s.wcu_per_key == pytest.approx(100.0) and s.api_stage_rate == pytest.approx(150.0)
    assert s.txn_window == pytest.approx(0.2) and s.time_scale == pytest.approx(10.0)
    r = Result(10, 60.0, accepted=10, dlq=1, retries=3).scaled(100, 10.0)
    assert (r.clients, r.accepted, r.dlq, r.retries) == (100, 100, 10, 30)
