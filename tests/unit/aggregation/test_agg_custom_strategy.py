"""A user's strategy, registered through $FMA_STRATEGY_MODULES or an entry point, selected by
name and run through `aggregate`: the example of docs/custom-strategies.md, verbatim."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from agg_helpers import as_updates, random_round, rel_err

from fma.domain import strategy_catalog
from fma.domain.aggregation import EngineOptions, aggregate, registry
from fma.domain.errors import InvalidInput

HERE = Path(__file__).parent
PLUGIN_DIR = HERE / "example_plugin"
DOC = HERE.parents[2] / "docs" / "custom-strategies.md"


@pytest.fixture
def clean_registry(monkeypatch):
    """Forget custom strategies and the example module around each test."""
    monkeypatch.setattr(registry, "STRATEGIES", dict(registry.BUILTIN))
    monkeypatch.setattr(strategy_catalog, "CATALOG", dict(strategy_catalog.CATALOG))
    monkeypatch.delitem(sys.modules, "fma_norm_bounded", raising=False)
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    yield
    sys.modules.pop("fma_norm_bounded", None)


def reference(g, clients, quantile, lr):
    flat = {n: np.float64(g[n]) for n in g}
    deltas = [{n: np.float64(t[n]) - flat[n] for n in g} for t, _ in clients]
    norms = np.array([np.sqrt(sum(np.sum(d[n] ** 2) for n in g)) for d in deltas])
    c = np.minimum(1.0, np.quantile(norms, quantile) / norms)
    w = np.array([n for _, n in clients], float)
    w /= w.sum()
    return {n: flat[n] + lr * sum(w[k] * c[k] * deltas[k][n] for k in range(len(clients))) for n in g}


def test_strategy_named_in_the_environment_is_validated_and_runs(clean_registry, monkeypatch):
    monkeypatch.setenv("FMA_STRATEGY_MODULES", "fma_norm_bounded")
    params = strategy_catalog.validate_strategy("norm_bounded", {"quantile": 0.5, "server_lr": 0.5})
    g, clients = random_round(0, 7, spread=0.5)
    out = aggregate("norm_bounded", params, g, as_updates(clients), {}, round_number=1,
                    options=EngineOptions(chunk_bytes=64, shard_bytes=200))
    assert rel_err(out.model, reference(g, clients, 0.5, 0.5)) < 1e-5
    assert out.info["clipped"] == 3 and "threshold" in out.state
    again = aggregate("norm_bounded", params, out.model, as_updates(clients), out.state, round_number=2)
    assert again.info["threshold"] != out.info["threshold"]  # smoothed across rounds


def test_custom_strategy_params_are_checked_with_clear_errors(clean_registry, monkeypatch):
    monkeypatch.setenv("FMA_STRATEGY_MODULES", "fma_norm_bounded")
    assert strategy_catalog.validate_strategy("norm_bounded", {}) == {"quantile": 0.5, "server_lr": 1.0}
    with pytest.raises(InvalidInput, match=r"quantile=1\.5 is outside"):
        strategy_catalog.validate_strategy("norm_bounded", {"quantile": 1.5})
    with pytest.raises(InvalidInput, match="unknown parameter"):
        strategy_catalog.validate_strategy("norm_bounded", {"alpha": 1})


def test_custom_strategy_is_refused_with_dp_since_its_sensitivity_is_unknown(clean_registry, monkeypatch):
    monkeypatch.setenv("FMA_STRATEGY_MODULES", "fma_norm_bounded")
    g, clients = random_round(1, 5, spread=2.0)
    dp = {"clipping_norm": 0.1, "noise_multiplier": 0.0}
    with pytest.raises(InvalidInput, match="cannot derive the sensitivity of a custom strategy") as err:
        aggregate("norm_bounded", {"dp": dp}, g, as_updates(clients), {}, round_number=1)
    assert err.value.code == "DP_NOT_SUPPORTED"


def test_strategy_from_an_entry_point_is_found_by_name(clean_registry, tmp_path, monkeypatch):
    dist = tmp_path / "fma_example_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fma-example-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[fma.strategies]\nnorm_bounded_ep = fma_norm_bounded:norm_bounded_avg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("FMA_STRATEGY_MODULES", raising=False)
    g, clients = random_round(2, 4)
    out = aggregate("norm_bounded_ep", {"quantile": 0.5, "server_lr": 1.0}, g, as_updates(clients), {},
                    round_number=1)
    assert rel_err(out.model, reference(g, clients, 0.5, 1.0)) < 1e-5


def test_unknown_names_and_builtin_overrides_are_refused(clean_registry):
    with pytest.raises(InvalidInput, match="unknown strategy"):
        strategy_catalog.validate_strategy("nope", {})
    with pytest.raises(ValueError, match="built-in"):
        registry.register_strategy("fedavg", lambda *a, **k: None)


def test_the_documented_example_is_the_tested_module():
    assert (PLUGIN_DIR / "fma_norm_bounded.py").read_text() in DOC.read_text()
