"""Issue 15: FedBuff's update rule against a float64 reference,

    new = current + eta * sum_i n_i s(tau_i) (u_i - m_{b_i}) / sum_i n_i,

with several staleness functions, server learning rates and mixed base versions; FedAvg when
every tau is 0 and eta is 1; robust rules and server optimizers on the staleness-weighted deltas."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import SHAPES, Reads, make_update, random_model

from fma.domain.aggregation import BufferedUpdate, aggregate, aggregate_buffer
from fma.domain.aggregation.engine import EngineOptions
from fma.domain.errors import InvalidInput
from fma.domain.round_mode import staleness_weight

STALENESS = [{"fn": "constant"}, {"fn": "polynomial", "exponent": 0.5}, {"fn": "polynomial", "exponent": 2.0},
             {"fn": "hinge", "a": 3.0, "b": 1.0}]


def history(seed: int, versions: int, shapes=SHAPES, dtype=np.float32, step_scale: float = 0.05
            ) -> list[dict[str, np.ndarray]]:
    """Published models m_0 .. m_{versions-1}, each a step from the one before."""
    rng = np.random.default_rng(seed)
    models = [random_model(rng, shapes, dtype)]
    for _ in range(versions - 1):
        step = random_model(rng, shapes, dtype, scale=step_scale)
        models.append({n: (models[-1][n] + step[n]).astype(dtype) for n in shapes})
    return models


def buffer_of(seed: int, models, bases: list[int], reads: Reads | None = None, clients=None):
    """One update per entry, trained from models[base] (client ids repeat when `clients` says so)."""
    rng = np.random.default_rng(seed + 1)
    entries, raw = [], []
    for i, b in enumerate(bases):
        noise = random_model(rng, SHAPES, models[0][next(iter(SHAPES))].dtype, scale=0.1)
        u = {n: (models[b][n] + noise[n]).astype(models[b][n].dtype) for n in models[b]}
        n_i = int(rng.integers(1, 200))
        cid = clients[i] if clients else f"c{i:03d}"
        entries.append(BufferedUpdate(make_update(cid, u, n_i, {"loss": float(i)}, reads), b))
        raw.append((u, n_i, b))
    base_inputs = {v: make_update(f"m{v}", models[v], 1, None, reads) for v in sorted(set(bases))}
    return entries, raw, base_inputs


def reference(models, raw, current: int, staleness, eta: float) -> dict[str, np.ndarray]:
    """The issue's formula in float64, tensor by tensor."""
    total = sum(n for _, n, _ in raw)
    out = {}
    for name, g in models[current].items():
        acc = np.zeros(g.shape, dtype=np.float64)
        for u, n, b in raw:
            s = staleness_weight(staleness, current - b)
            acc += n * s * (u[name].astype(np.float64) - models[b][name].astype(np.float64))
        out[name] = g.astype(np.float64) + eta * acc / total
    return out


def rel_error(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> float:
    num = sum(float(np.sum((got[n].astype(np.float64) - ref[n]) ** 2)) for n in ref)
    den = sum(float(np.sum(ref[n] ** 2)) for n in ref)
    return (num / den) ** 0.5


@pytest.mark.parametrize("staleness", STALENESS, ids=lambda s: s["fn"] + str(s.get("exponent", "")))
@pytest.mark.parametrize("eta", [1.0, 0.5, 2.5])
def test_fedbuff_matches_the_float64_formula_with_mixed_base_versions(staleness, eta):
    models = history(3, 6)
    bases = [5, 5, 4, 2, 3, 5, 1]
    entries, raw, base_inputs = buffer_of(7, models, bases)
    result = aggregate_buffer("fedavg", {}, models[5], entries, base_inputs, {}, current_version=5,
                              staleness=staleness, server_learning_rate=eta)
    ref = reference(models, raw, 5, staleness, eta)
    assert rel_error(result.model, ref) < 1e-6
    assert all(result.model[n].dtype == np.float32 for n in ref)


def test_float64_models_match_the_formula_to_float64_rounding():
    models = history(4, 4, dtype=np.float64)
    entries, raw, base_inputs = buffer_of(8, models, [3, 1, 2, 0])
    staleness = {"fn": "hinge", "a": 1.0, "b": 0.0}
    result = aggregate_buffer("fedavg", {}, models[3], entries, base_inputs, {}, current_version=3,
                              staleness=staleness, server_learning_rate=0.7)
    assert rel_error(result.model, reference(models, raw, 3, staleness, 0.7)) < 1e-13


def test_with_no_staleness_and_eta_one_fedbuff_is_fedavg_of_the_buffer():
    models = history(5, 3)
    entries, _, base_inputs = buffer_of(9, models, [2, 2, 2, 2])
    buffered = aggregate_buffer("fedavg", {}, models[2], entries, base_inputs, {}, current_version=2,
                                staleness={"fn": "polynomial", "exponent": 0.5})
    fedavg = aggregate("fedavg", {}, models[2], [e.update for e in entries], {}, round_number=3)
    fedavg64 = {n: v.astype(np.float64) for n, v in fedavg.model.items()}
    assert rel_error(buffered.model, fedavg64) < 1e-6
    assert buffered.metrics == pytest.approx(fedavg.metrics)


def test_same_buffer_in_any_order_and_any_chunking_gives_the_same_bytes():
    models = history(6, 4)
    entries, _, base_inputs = buffer_of(10, models, [3, 0, 2, 3, 1])
    kwargs = {"current_version": 3, "staleness": {"fn": "polynomial", "exponent": 1.0}, "server_learning_rate": 0.8}
    portable = EngineOptions(portable=True, chunk_bytes=64, prefetch=0)
    first = aggregate_buffer("fedavg", {}, models[3], entries, base_inputs, {}, **kwargs,
                             options=EngineOptions(portable=True))
    again = aggregate_buffer("fedavg", {}, models[3], entries[::-1], base_inputs, {}, **kwargs, options=portable)
    for name in first.model:
        assert first.model[name].tobytes() == again.model[name].tobytes()


def test_one_client_may_have_two_entries_on_different_bases():
    models = history(11, 3)
    entries, raw, base_inputs = buffer_of(12, models, [2, 1, 2], clients=["c-a", "c-a", "c-b"])
    staleness = {"fn": "constant"}
    result = aggregate_buffer("fedavg", {}, models[2], entries, base_inputs, {}, current_version=2,
                              staleness=staleness)
    assert rel_error(result.model, reference(models, raw, 2, staleness, 1.0)) < 1e-6
    assert [(i["client_id"], i["round"]) for i in result.info["inputs"]] == [("c-a", 2), ("c-a", 3), ("c-b", 3)]


def test_manifest_inputs_record_base_version_staleness_and_weight():
    models = history(13, 4)
    entries, raw, base_inputs = buffer_of(14, models, [3, 1])
    staleness = {"fn": "polynomial", "exponent": 0.5}
    result = aggregate_buffer("fedavg", {}, models[3], entries, base_inputs, {}, current_version=3,
                              staleness=staleness)
    total = raw[0][1] + raw[1][1]
    by_client = {i["client_id"]: i for i in result.info["inputs"]}
    assert by_client["c001"]["base_version"] == 1 and by_client["c001"]["staleness"] == 2
    assert by_client["c001"]["staleness_weight"] == pytest.approx(3 ** -0.5)
    assert by_client["c001"]["weight"] == pytest.approx(raw[1][1] / total)
    assert by_client["c001"]["effective_weight"] == pytest.approx(raw[1][1] / total * 3 ** -0.5)
    assert by_client["c000"]["staleness"] == 0 and by_client["c000"]["staleness_weight"] == 1.0


def test_each_base_model_slice_is_read_once_per_pass_not_once_per_update():
    models = history(15, 2)
    reads = Reads()
    entries, _, base_inputs = buffer_of(16, models, [1] * 8, reads)
    aggregate_buffer("fedavg", {}, models[1], entries, base_inputs, {}, current_version=1,
                     staleness={"fn": "constant"}, options=EngineOptions(prefetch=0))
    # a small object's header probe reads all of it once; then one data pass over every object
    everything = sum(e.update.size for e in entries) + base_inputs[1].size
    assert reads.bytes <= 2 * everything  # reading the base once per update would add 7 more


def _deltas(models, raw, current, staleness):
    return [{n: staleness_weight(staleness, current - b) * (u[n].astype(np.float64) - models[b][n].astype(np.float64))
             for n in u} for u, _, b in raw]


def test_median_runs_on_staleness_weighted_deltas():
    models = history(17, 4)
    entries, raw, base_inputs = buffer_of(18, models, [3, 2, 1, 3, 0])
    staleness = {"fn": "polynomial", "exponent": 0.5}
    result = aggregate_buffer("fedmedian", {}, models[3], entries, base_inputs, {}, current_version=3,
                              staleness=staleness, server_learning_rate=0.5)
    deltas = _deltas(models, raw, 3, staleness)
    ref = {n: models[3][n].astype(np.float64) + 0.5 * np.median([d[n] for d in deltas], axis=0) for n in models[3]}
    assert rel_error(result.model, ref) < 1e-6


def test_trimmed_mean_runs_on_staleness_weighted_deltas():
    models = history(19, 3)
    entries, raw, base_inputs = buffer_of(20, models, [2, 1, 0, 2, 1])
    staleness = {"fn": "constant"}
    result = aggregate_buffer("fedtrimmedavg", {"beta": 0.2}, models[2], entries, base_inputs, {},
                              current_version=2, staleness=staleness)
    stacked = {n: np.sort(np.stack([d[n] for d in _deltas(models, raw, 2, staleness)]), axis=0) for n in models[2]}
    ref = {n: models[2][n].astype(np.float64) + stacked[n][1:4].mean(axis=0) for n in models[2]}
    assert rel_error(result.model, ref) < 1e-6


def test_krum_picks_the_delta_nearest_the_others_even_when_its_model_is_far():
    """Two honest clients trained on old bases: their models are far from the rest, their
    deltas are not. Krum on deltas keeps them in the pool and never picks the attacker."""
    models = history(21, 4, step_scale=2.0)
    entries, raw, base_inputs = buffer_of(22, models, [3, 3, 0, 0, 3, 3])
    far = sum(float(np.sum((models[0][n] - models[3][n]) ** 2)) for n in SHAPES) ** 0.5
    assert far > 10 * 0.1 * sum(np.prod(s) for s in SHAPES.values()) ** 0.5  # bases far apart vs. the noise
    evil = {n: (v + 50.0).astype(np.float32) for n, v in models[3].items()}
    entries.append(BufferedUpdate(make_update("c-evil", evil, 10), 3))
    staleness = {"fn": "constant"}
    result = aggregate_buffer("krum", {"num_malicious": 1}, models[3], entries, base_inputs, {},
                              current_version=3, staleness=staleness)
    deltas = _deltas(models, raw, 3, staleness)
    chosen = result.info["selected"][0]
    assert "c-evil" not in chosen
    k = int(chosen.split(":")[1].removeprefix("c"))  # c000 .. c005 in the order of `raw`
    ref = {n: models[3][n].astype(np.float64) + deltas[k][n] for n in models[3]}
    assert rel_error(result.model, ref) < 1e-6


def test_fedavgm_steps_on_current_plus_the_staleness_weighted_mean_delta():
    models = history(23, 4)
    entries, raw, base_inputs = buffer_of(24, models, [3, 1, 2])
    staleness = {"fn": "polynomial", "exponent": 0.5}
    params = {"server_learning_rate": 0.5, "server_momentum": 0.0}
    result = aggregate_buffer("fedavgm", params, models[3], entries, base_inputs, {}, current_version=3,
                              staleness=staleness)
    full_step = reference(models, raw, 3, staleness, 1.0)
    ref = {n: models[3][n] + 0.5 * (full_step[n] - models[3][n]) for n in models[3]}
    assert rel_error(result.model, ref) < 1e-6


def test_fedadam_on_fresh_buffer_equals_sync_fedadam_and_saves_its_state():
    models = history(25, 3)
    entries, _, base_inputs = buffer_of(26, models, [2, 2, 2])
    buffered = aggregate_buffer("fedadam", {}, models[2], entries, base_inputs, {}, current_version=2,
                                staleness={"fn": "constant"})
    sync = aggregate("fedadam", {}, models[2], [e.update for e in entries], {}, round_number=3)
    sync64 = {n: v.astype(np.float64) for n, v in sync.model.items()}
    assert rel_error(buffered.model, sync64) < 1e-6
    assert set(buffered.state) == set(sync.state) and int(buffered.state["step"]) == 1


def test_fedyogi_on_a_stale_buffer_is_sync_fedyogi_of_the_staleness_weighted_models():
    """A server optimizer sees the buffer as if each client had sent current + s_i (u_i - m_{b_i})."""
    models = history(27, 5)
    entries, raw, base_inputs = buffer_of(28, models, [4, 2, 1, 3])
    hinge = {"fn": "hinge", "a": 5.0, "b": 0.0}
    buffered = aggregate_buffer("fedyogi", {}, models[4], entries, base_inputs, {}, current_version=4,
                                staleness=hinge)
    shifted = [make_update(f"c{i:03d}", {n: (models[4][n] + d[n]).astype(np.float32) for n in d}, n_i)
               for i, (d, (_, n_i, _)) in enumerate(zip(_deltas(models, raw, 4, hinge), raw, strict=True))]
    sync = aggregate("fedyogi", {}, models[4], shifted, {}, round_number=5)
    assert rel_error(buffered.model, {n: v.astype(np.float64) for n, v in sync.model.items()}) < 1e-5
    assert int(buffered.state["step"]) == 1


def test_empty_buffer_duplicates_and_future_bases_are_refused():
    models = history(29, 2)
    entries, _, base_inputs = buffer_of(30, models, [1, 1])
    with pytest.raises(InvalidInput):
        aggregate_buffer("fedavg", {}, models[1], [], base_inputs, {}, current_version=1, staleness={"fn": "constant"})
    with pytest.raises(InvalidInput):
        aggregate_buffer("fedavg", {}, models[1], [entries[0], entries[0]], base_inputs, {}, current_version=1,
                         staleness={"fn": "constant"})
    with pytest.raises(ValueError):
        aggregate_buffer("fedavg", {}, models[1], entries, base_inputs, {}, current_version=0,
                         staleness={"fn": "constant"})
    with pytest.raises(InvalidInput):
        aggregate_buffer("mine-unknown", {}, models[1], entries, base_inputs, {}, current_version=1,
                         staleness={"fn": "constant"})
