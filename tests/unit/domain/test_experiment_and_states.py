"""Round policy parsing, new rounds, and the state machines of DESIGN section 5."""

from __future__ import annotations

import pytest

from fma.domain.errors import InvalidInput
from fma.domain.experiment import Experiment, RoundPolicy, new_round, parse_client_config, parse_name
from fma.domain.states import EXPERIMENT_TRANSITIONS, USER_SETTABLE, ExperimentStatus, RoundState


def test_policy_defaults_and_quota():
    policy = RoundPolicy.parse(None)
    assert (policy.min_updates, policy.total_rounds, policy.on_deadline) == (2, 10, "aggregate")
    assert RoundPolicy.parse({"min_updates": "all"}).quota(lambda: 5) == 5
    assert RoundPolicy.parse({"min_updates": "all"}).quota(lambda: 0) == 1
    assert RoundPolicy.parse({"min_updates": 3}).quota(lambda: 10) == 3
    assert RoundPolicy.parse({"min_updates": 3}).quota(lambda: 1 / 0) == 3  # a fixed quota never counts
    assert RoundPolicy(**policy.to_json()) == policy


@pytest.mark.parametrize("body", [[], {"min_updates": 0}, {"min_updates": True}, {"total_rounds": 10**9},
                                  {"on_deadline": "explode"}, {"deadline_seconds": -1}, {"surprise": 1}])
def test_bad_policies_are_invalid_input(body):
    with pytest.raises(InvalidInput):
        RoundPolicy.parse(body)


def test_names_and_client_config_are_bounded():
    assert parse_name("  digits ") == "digits"
    for bad in ("", "   ", 5, "x" * 201):
        with pytest.raises(InvalidInput):
            parse_name(bad)
    assert parse_client_config(None) == {}
    with pytest.raises(InvalidInput):
        parse_client_config({"blob": "x" * (17 << 10)})


def test_new_round_is_open_with_the_policys_deadline():
    exp = Experiment("e", "n", "o", "fedavg", {}, RoundPolicy(min_updates=3, deadline_seconds=30))
    rnd = new_round(exp, 2, 100.0)
    assert (rnd.round, rnd.state, rnd.min_updates, rnd.deadline, rnd.opened_at) == (2, RoundState.OPEN, "3",
                                                                                       130.0, 100.0)
    assert new_round(Experiment("e", "n", "o", "fedavg", {}, RoundPolicy()), 1, 5.0).deadline is None


def test_ended_experiments_go_nowhere_and_users_set_only_three_statuses():
    ended = {ExperimentStatus.COMPLETED, ExperimentStatus.STOPPED, ExperimentStatus.FAILED}
    assert all(EXPERIMENT_TRANSITIONS[s] == frozenset() for s in ended)
    assert {ExperimentStatus.PAUSED, ExperimentStatus.RUNNING, ExperimentStatus.STOPPED} == USER_SETTABLE
    assert set(EXPERIMENT_TRANSITIONS) == set(ExperimentStatus)
