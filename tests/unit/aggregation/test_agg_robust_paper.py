"""Krum, Multi-Krum and Bulyan against float64 references from the papers, with one far
outlier placed at the lowest, middle or highest client id (issue 19, item 2); Krum's
precondition; trimmed mean's exact trim count."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import as_updates, make_update
from paper_refs import bulyan_selection, krum, multikrum

from fma.domain.aggregation import aggregate
from fma.domain.aggregation.math import trim_count
from fma.domain.errors import Unprocessable

OFFSETS = [1e2, 1e4, 1e6, 1e30]
SEEDS = range(20)


def adversarial(seed: int, offset: float, n: int, position: int, d: int = 53):
    """n client models of d coordinates: g + offset (the outlier, at `position` in id order),
    g + 0.4 (a colluder), honest ones g + N(0, 0.1)."""
    rng = np.random.default_rng([seed, int(np.log10(offset))])
    g = rng.standard_normal(d).astype(np.float32)
    honest = [(g + rng.normal(0, 0.1, d)).astype(np.float32) for _ in range(n - 2)]
    rows = [g + np.float32(0.4), *honest]
    rows.insert(position, g + np.float32(offset))
    return {"w": g}, rows


def run(name, params, g, rows, counts=None):
    clients = [({"w": r}, (counts[i] if counts else 1)) for i, r in enumerate(rows)]
    return aggregate(name, params, g, as_updates(clients), {}, round_number=1)


def ids(indices):
    return [f"c{i:03d}" for i in indices]


def test_minimal_case_of_the_issue_picks_what_float64_picks_not_the_colluder():
    """n = 7, f = 2, 53 coordinates, c000 = g + 1e4, c001 = g + 0.4, c002-c006 honest."""
    g, rows = adversarial(0, 1e4, 7, 0)
    out = run("krum", {"num_malicious": 2}, g, rows)
    expected = krum(np.array(rows), 2)
    assert out.info["selected"] == ids([expected]) and expected >= 2
    assert np.array_equal(out.model["w"], rows[expected])  # the published model is that client's


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("position", [0, 3, 6])
def test_krum_and_multikrum_choose_as_the_float64_reference_over_seeds(offset, position):
    for seed in SEEDS:
        g, rows = adversarial(seed, offset, 7, position)
        x = np.array(rows)
        assert run("krum", {"num_malicious": 2}, g, rows).info["selected"] == ids([krum(x, 2)]), seed
        multi = run("multikrum", {"num_malicious": 2, "num_to_select": 3}, g, rows).info["selected"]
        assert multi == ids(multikrum(x, 2, 3)), seed


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("position", [0, 5, 10])
def test_bulyan_selects_as_the_float64_reference_over_seeds(offset, position):
    for seed in SEEDS:
        g, rows = adversarial(seed, offset, 11, position)
        out = run("bulyan", {"num_malicious": 2}, g, rows)
        assert out.info["selected"] == ids(bulyan_selection(np.array(rows), 2)), seed


def test_krum_refuses_n_at_most_2f_plus_2():
    g, rows = adversarial(1, 10.0, 4, 0)
    with pytest.raises(Unprocessable, match="more than 2 \\* num_malicious \\+ 2") as err:
        run("krum", {"num_malicious": 1}, g, rows[:3])
    assert err.value.code == "TOO_FEW_UPDATES"
    with pytest.raises(Unprocessable):
        run("multikrum", {"num_malicious": 1, "num_to_select": 2}, g, rows)
    assert run("krum", {"num_malicious": 1}, g, [*rows, rows[1]]).info["selected"]  # n = 5 > 4


def test_multikrum_paper_variant_averages_the_selection_uniformly():
    g, rows = adversarial(2, 50.0, 8, 0)
    counts = [5, 1000, 1, 7, 300, 2, 9, 40]
    params = {"num_malicious": 1, "num_to_select": 4}
    paper = run("multikrum", {**params, "variant": "paper"}, g, rows, counts)
    flower = run("multikrum", params, g, rows, counts)
    chosen = multikrum(np.array(rows), 1, 4)
    assert paper.info["selected"] == flower.info["selected"] == ids(chosen)
    plain = np.mean([np.float64(rows[i]) for i in chosen], axis=0)
    weighted = sum(np.float64(rows[i]) * counts[i] for i in chosen) / sum(counts[i] for i in chosen)
    np.testing.assert_allclose(paper.model["w"], plain, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(flower.model["w"], weighted, rtol=1e-6, atol=1e-6)
    assert set(paper.info["weights"].values()) == {0.0, 0.25}


@pytest.mark.parametrize(("beta", "k", "cut"), [(0.29, 100, 29), (0.1, 30, 3), (0.3, 10, 3), (0.2, 5, 1),
                                                (0.49, 100, 49), (0.07, 100, 7), (0.0, 9, 0)])
def test_trim_count_is_exact_on_the_decimal_written(beta, k, cut):
    assert trim_count(beta, k) == cut


def test_trimmed_mean_with_beta_029_of_100_cuts_29_from_each_end():
    g = {"w": np.zeros(3, np.float32)}
    values = np.arange(100, dtype=np.float64) ** 2  # asymmetric: cutting 28 or 29 gives other means
    updates = [make_update(f"c{i:03d}", {"w": np.full(3, v, np.float32)}) for i, v in enumerate(values)]
    out = aggregate("fedtrimmedavg", {"beta": 0.29}, g, updates, {}, round_number=1)
    np.testing.assert_allclose(out.model["w"], np.mean(values[29:71]), rtol=1e-6)
    assert abs(np.mean(values[29:71]) - np.mean(values[28:72])) > 10
