"""Issue 15: the async round policy (`rounds.mode`), its staleness functions and which strategies
may run in async mode. Every refusal is InvalidInput naming the field; nothing else escapes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fma.domain.errors import InvalidInput
from fma.domain.experiment import Experiment, RoundPolicy, new_round
from fma.domain.round_mode import DEFAULT_STALENESS, parse_staleness, staleness_weight
from fma.domain.strategy_catalog import check_async_strategy, validate_strategy


def test_sync_is_the_default_and_its_json_reads_as_before_async_mode():
    """A sync policy has no "mode" key (absent = sync): earlier histories' genesis hashes hold."""
    policy = RoundPolicy.parse({"min_updates": 3})
    assert policy.mode == "sync" and not policy.is_async
    assert policy.to_json() == {"min_updates": 3, "total_rounds": 10, "deadline_seconds": None,
                                "on_deadline": "aggregate", "min_updates_at_deadline": 1}
    assert RoundPolicy.parse({"mode": "sync", "min_updates": 3}) == policy


def test_async_policy_fills_defaults_and_round_trips_through_its_stored_json():
    policy = RoundPolicy.parse({"mode": "async", "buffer_size": 3, "total_rounds": 7})
    assert policy.to_json() == {
        "mode": "async", "total_rounds": 7, "buffer_size": 3, "max_staleness": 10, "max_wait_seconds": None,
        "min_buffer": 1, "staleness": {"fn": "polynomial", "exponent": 0.5}, "server_learning_rate": 1.0,
    }
    stored = RoundPolicy(**policy.to_json())  # what the connectors do with the stored dict
    assert stored == policy and stored.quota(lambda: 100) == 3 and stored.min_updates == 3


def test_async_round_deadline_is_max_wait_seconds_after_the_version_opened():
    policy = RoundPolicy.parse({"mode": "async", "buffer_size": 4, "max_wait_seconds": 30, "min_buffer": 2})
    exp = Experiment("e", "n", "o", "fedavg", {}, policy)
    rnd = new_round(exp, 2, 100.0)
    assert rnd.deadline == 130.0 and rnd.min_updates == "4"
    assert policy.smallest_buffer() == 2


@pytest.mark.parametrize("staleness, expected", [
    ({"fn": "constant"}, {"fn": "constant"}),
    ({"fn": "polynomial"}, {"fn": "polynomial", "exponent": 0.5}),
    ({"fn": "polynomial", "exponent": 2}, {"fn": "polynomial", "exponent": 2.0}),
    ({"fn": "hinge", "a": 10, "b": 4}, {"fn": "hinge", "a": 10.0, "b": 4.0}),
    (None, DEFAULT_STALENESS),
])
def test_staleness_function_is_parsed_with_its_defaults(staleness, expected):
    assert parse_staleness(staleness) == expected


INVALID = [
    ("mode-unknown", {"mode": "batch"}, "rounds.mode"),
    ("mode-not-string", {"mode": 1}, "rounds.mode"),
    ("buffer-in-sync", {"buffer_size": 3}, "rounds.buffer_size"),
    ("staleness-in-sync", {"mode": "sync", "staleness": {"fn": "constant"}}, "rounds.staleness"),
    ("min-updates-in-async", {"mode": "async", "buffer_size": 3, "min_updates": 2}, "rounds.min_updates"),
    ("deadline-in-async", {"mode": "async", "buffer_size": 3, "deadline_seconds": 9}, "rounds.deadline_seconds"),
    ("buffer-missing", {"mode": "async"}, "rounds.buffer_size"),
    ("buffer-zero", {"mode": "async", "buffer_size": 0}, "rounds.buffer_size"),
    ("buffer-float", {"mode": "async", "buffer_size": 2.0}, "rounds.buffer_size"),
    ("buffer-bool", {"mode": "async", "buffer_size": True}, "rounds.buffer_size"),
    ("staleness-negative", {"mode": "async", "buffer_size": 3, "max_staleness": -1}, "rounds.max_staleness"),
    ("min-buffer-above-k", {"mode": "async", "buffer_size": 3, "max_wait_seconds": 5, "min_buffer": 4},
     "rounds.min_buffer"),
    ("min-buffer-without-wait", {"mode": "async", "buffer_size": 3, "min_buffer": 2}, "rounds.min_buffer"),
    ("wait-zero", {"mode": "async", "buffer_size": 3, "max_wait_seconds": 0}, "rounds.max_wait_seconds"),
    ("lr-zero", {"mode": "async", "buffer_size": 3, "server_learning_rate": 0}, "rounds.server_learning_rate"),
    ("lr-huge", {"mode": "async", "buffer_size": 3, "server_learning_rate": 10**400},
     "rounds.server_learning_rate"),
    ("lr-string", {"mode": "async", "buffer_size": 3, "server_learning_rate": "1"}, "rounds.server_learning_rate"),
    ("fn-unknown", {"mode": "async", "buffer_size": 3, "staleness": {"fn": "exp"}}, "rounds.staleness.fn"),
    ("fn-missing", {"mode": "async", "buffer_size": 3, "staleness": {}}, "rounds.staleness.fn"),
    ("staleness-list", {"mode": "async", "buffer_size": 3, "staleness": ["constant"]}, "rounds.staleness"),
    ("hinge-without-b", {"mode": "async", "buffer_size": 3, "staleness": {"fn": "hinge", "a": 1}},
     "rounds.staleness.b"),
    ("hinge-negative-a", {"mode": "async", "buffer_size": 3, "staleness": {"fn": "hinge", "a": -1, "b": 1}},
     "rounds.staleness.a"),
    ("exponent-nan-ish", {"mode": "async", "buffer_size": 3, "staleness": {"fn": "polynomial", "exponent": 1e309}},
     "rounds.staleness.exponent"),
    ("constant-with-param", {"mode": "async", "buffer_size": 3, "staleness": {"fn": "constant", "a": 1}},
     "rounds.staleness"),
    ("unknown-field", {"mode": "async", "buffer_size": 3, "furthest_base_agg": 2}, "rounds"),
]


@pytest.mark.parametrize("rounds, field", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_round_policies_name_the_field(rounds, field):
    with pytest.raises(InvalidInput) as info:
        RoundPolicy.parse(rounds)
    assert info.value.details["field"] == field
    assert field.removeprefix("rounds.").split(".")[0] in info.value.message or field == "rounds"


@pytest.mark.parametrize("tau", [0, 1, 2, 5, 17])
def test_staleness_weights_follow_their_formulas(tau):
    assert staleness_weight({"fn": "constant"}, tau) == 1.0
    assert staleness_weight({"fn": "polynomial", "exponent": 0.5}, tau) == pytest.approx((1 + tau) ** -0.5)
    hinge = {"fn": "hinge", "a": 10.0, "b": 4.0}
    assert staleness_weight(hinge, tau) == (1.0 if tau <= 4 else pytest.approx(1 / (10 * (tau - 4) + 1)))


@given(st.sampled_from([{"fn": "constant"}, {"fn": "polynomial", "exponent": 0.5},
                        {"fn": "polynomial", "exponent": 3.0}, {"fn": "hinge", "a": 2.0, "b": 1.0}]),
       st.integers(0, 1000))
def test_staleness_weight_is_in_zero_one_and_never_grows_with_staleness(fn, tau):
    w = staleness_weight(fn, tau)
    assert 0.0 < w <= 1.0 and staleness_weight(fn, tau + 1) <= w and staleness_weight(fn, 0) == 1.0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["mode", "buffer_size", "max_staleness", "max_wait_seconds", "min_buffer", "staleness",
                          "server_learning_rate", "total_rounds", "min_updates", "deadline_seconds", "fn"])
POLICY = st.dictionaries(FIELDS | st.text(max_size=6), JSON | st.just("async"), max_size=6) | JSON


@settings(max_examples=300, deadline=None)
@given(POLICY)
def test_parser_of_untrusted_rounds_raises_only_invalid_input(data):
    try:
        policy = RoundPolicy.parse(data)
    except InvalidInput as exc:
        assert exc.details.get("field", "").startswith("rounds")
        return
    again = RoundPolicy(**policy.to_json())
    assert again.to_json() == policy.to_json()
    if policy.is_async:
        assert policy.buffer_size >= 1 and policy.min_buffer <= policy.buffer_size
        assert math.isfinite(policy.server_learning_rate) and policy.server_learning_rate > 0


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["fn", "exponent", "a", "b", "c"]),
                       JSON | st.sampled_from(["constant", "polynomial", "hinge"]), max_size=4))
def test_staleness_parser_raises_only_invalid_input_and_yields_usable_weights(data):
    try:
        fn = parse_staleness(data)
    except InvalidInput as exc:
        assert exc.details["field"].startswith("rounds.staleness")
        return
    assert 0.0 < staleness_weight(fn, 3) <= 1.0


def _async_check(name, params=None, lr=1.0, smallest=3):
    check_async_strategy(name, validate_strategy(name, params or {}), server_learning_rate=lr,
                         smallest_buffer=smallest)


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad",
                                  "fedmedian", "fedtrimmedavg", "krum", "multikrum"])
def test_catalog_allows_means_optimizers_and_robust_rules_in_async_mode(name):
    params = {"num_to_select": 2} if name == "multikrum" else {}
    _async_check(name, params)


@pytest.mark.parametrize("name, params, lr, smallest, code", [
    ("fedavg", {"dp": {"clipping_norm": 1.0, "noise_multiplier": 1.0}}, 1.0, 3, "DP_NOT_SUPPORTED"),
    ("fedadam", {}, 0.5, 3, "INVALID_ROUND_POLICY"),
    ("fedavgm", {}, 2.0, 3, "INVALID_ROUND_POLICY"),
    ("krum", {}, 1.0, 2, "INVALID_STRATEGY_PARAMS"),
    ("bulyan", {"num_malicious": 1}, 1.0, 6, "INVALID_STRATEGY_PARAMS"),
])
def test_catalog_refuses_combinations_async_mode_cannot_run(name, params, lr, smallest, code):
    with pytest.raises(InvalidInput) as info:
        _async_check(name, params, lr, smallest)
    assert info.value.code == code


def test_catalog_refuses_custom_strategies_in_async_mode():
    with pytest.raises(InvalidInput) as info:
        check_async_strategy("mine", {}, server_learning_rate=1.0, smallest_buffer=3)
    assert info.value.code == "ASYNC_NOT_SUPPORTED"
