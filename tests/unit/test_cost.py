"""The round's cost: one price table, usage counts priced per resource."""

from __future__ import annotations

import pytest

from fma.domain.cost import PRICES, Prices, Usage, minimum_cost, round_cost


def test_round_cost_prices_each_resource_from_the_one_table():
    usage = Usage()
    usage.task("aggregate", 2048, 10.0)  # 20 GB-s
    usage.read(4 << 20, requests=1000)
    usage.write(1 << 20, requests=3)
    usage.items_read(1000, 600)   # 600 kB -> 147 read units
    usage.items_written(4, transactional=True)  # 8 write units
    usage.state_transitions = 40
    cost = round_cost(usage)
    assert cost["gb_seconds"] == 20.0 and cost["dynamodb_read_units"] == 147 and cost["dynamodb_write_units"] == 8
    assert cost["usd"]["lambda"] == pytest.approx(20 * 0.0000133334 + 0.20 / 1e6)
    assert cost["usd"]["s3"] == pytest.approx(1000 * 0.0004 / 1000 + 3 * 0.005 / 1000)
    assert cost["usd"]["dynamodb"] == pytest.approx(147 * 0.125 / 1e6 + 8 * 0.625 / 1e6)
    assert cost["usd"]["step_functions"] == pytest.approx(40 * 0.025 / 1000)
    assert cost["usd_total"] == pytest.approx(sum(cost["usd"].values()))
    assert cost["prices"].startswith("list prices")


def test_prices_are_overridable_but_not_by_unknown_names():
    cheap = PRICES.with_overrides({"lambda_gb_second": 0.00001})
    assert cheap.lambda_gb_second == 0.00001 and cheap.s3_get == PRICES.s3_get
    usage = Usage()
    usage.task("x", 1024, 1.0)
    assert round_cost(usage, cheap)["prices"]["lambda_gb_second"] == 0.00001
    with pytest.raises(ValueError, match="unknown price"):
        Prices().with_overrides({"lambda_gb_sec": 1.0})


def test_the_minimum_is_one_streaming_pass_at_full_bandwidth():
    floor = minimum_cost(9 * 10**9, 90e6, 10, 2048)
    assert floor["seconds"] == pytest.approx(10.0) and floor["gb_seconds"] == pytest.approx(20.0)
