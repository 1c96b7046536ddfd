"""Strategy validation at experiment creation: names, defaults, bounds, the dp object, and no
numpy in the API handler's import path."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fma.domain.aggregation import registry
from fma.domain.errors import InvalidInput
from fma.domain.strategy_catalog import CATALOG, client_config_for, validate_strategy


def test_every_runnable_strategy_is_in_the_catalog_and_back():
    assert set(registry.BUILTIN) <= set(CATALOG)
    for name in ("fedavg", "fedavgm", "fedprox", "fedadagrad", "fedadam", "fedyogi", "fedmedian",
                 "fedtrimmedavg", "krum", "multikrum", "bulyan"):
        assert name in registry.BUILTIN


def test_defaults_are_filled_in_with_flowers_values():
    assert validate_strategy("fedadam", None) == {
        "eta": 0.1, "eta_l": 0.1, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-9, "variant": "flower"}
    assert validate_strategy("fedyogi", {"eta": 0.5})["tau"] == 1e-3
    assert validate_strategy("fedtrimmedavg", {}) == {"beta": 0.2}
    assert validate_strategy("fedavgm", {}) == {"server_learning_rate": 1.0, "server_momentum": 0.0}


@pytest.mark.parametrize(("name", "params", "field", "text"), [
    ("fedtrimmedavg", {"beta": 0.5}, "strategy.params.beta", "outside [0.0, 0.5)"),
    ("fedadam", {"beta_2": 1.0}, "strategy.params.beta_2", "outside"),
    ("fedadam", {"eta": 0}, "strategy.params.eta", "outside (0.0"),
    ("krum", {"num_malicious": 1.5}, "strategy.params.num_malicious", "must be a int"),
    ("krum", {"num_malicious": -1}, "strategy.params.num_malicious", "outside"),
    ("multikrum", {"num_malicious": 1}, "strategy.params.num_to_select", "required"),
    ("fedavg", {"dp": {"noise_multiplier": 1.0}}, "strategy.params.dp.clipping_norm", "required"),
    ("fedavg", {"dp": {"clipping_norm": 1, "noise_multiplier": 1, "target_delta": 1}},
     "strategy.params.dp.target_delta", "outside"),
    ("fedavg", {"dp": 3}, "strategy.params.dp", "object"),
    ("fedavg", {"lr": 1}, "strategy.params", "unknown parameter"),
    ("fedavg", {"dp": {"clipping_norm": float("nan"), "noise_multiplier": 1}},
     "strategy.params.dp.clipping_norm", "finite"),
    ("fedavgm", {"server_learning_rate": 10**400}, "strategy.params.server_learning_rate", "finite"),
    ("krum", {"num_malicious": 10**60}, "strategy.params.num_malicious", "num_malicious=huge is outside"),
    ("multikrum", {"num_malicious": 1, "num_to_select": 10**7}, "strategy.params.num_to_select", "outside"),
    ("fedadam", {"variant": "flwr"}, "strategy.params.variant", "one of ['flower', 'paper']"),
    ("multikrum", {"num_to_select": 2, "variant": 1}, "strategy.params.variant", "one of"),
])
def test_bad_params_name_the_field(name, params, field, text):
    with pytest.raises(InvalidInput) as err:
        validate_strategy(name, params)
    assert err.value.details["field"] == field
    assert text in err.value.message


def test_dp_params_get_their_defaults():
    out = validate_strategy("fedadam", {"dp": {"clipping_norm": 2, "noise_multiplier": 0.8}})
    assert out["dp"] == {"clipping_norm": 2.0, "noise_multiplier": 0.8, "target_delta": 1e-5, "sampling_rate": 1.0,
                         "target_quantile": None, "clip_norm_lr": 0.2, "clipped_count_stddev": None,
                         "expected_clients": None}
    dp = {"clipping_norm": 0.1, "noise_multiplier": 1, "target_quantile": 0.5}
    adaptive = validate_strategy("fedavg", {"dp": dp})
    assert adaptive["dp"]["target_quantile"] == 0.5


def test_client_config_carries_the_client_side_params_only():
    assert client_config_for("fedprox", validate_strategy("fedprox", {"proximal_mu": 0.3})) == {"proximal_mu": 0.3}
    assert client_config_for("fedadam", validate_strategy("fedadam", {})) == {"eta_l": 0.1}
    assert client_config_for("krum", validate_strategy("krum", {})) == {}


def test_validating_a_builtin_strategy_does_not_import_numpy():
    code = ("import sys; from fma.domain.strategy_catalog import validate_strategy;"
            "validate_strategy('fedadam', {'dp': {'clipping_norm': 1, 'noise_multiplier': 1}});"
            "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan"])
def test_dp_around_a_robust_selection_is_refused_saying_why(name):
    params = {"krum": {"num_malicious": 1}, "multikrum": {"num_malicious": 1, "num_to_select": 2}}.get(name, {})
    with pytest.raises(InvalidInput) as err:
        validate_strategy(name, {**params, "dp": {"clipping_norm": 1, "noise_multiplier": 1}})
    assert err.value.code == "DP_NOT_SUPPORTED" and err.value.details["field"] == "strategy.params.dp"
    assert f"not available with {name}" in err.value.message and "epsilon reported would not hold" in err.value.message
    assert "fedadam" in err.value.message
