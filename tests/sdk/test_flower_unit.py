"""fma_client.flower against the in-memory fake server: order, config, metrics, evaluations."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import responses

from fma_client import Client
from fma_client._flower_convert import flower_metrics, model_names, to_weights

from .conftest import API, EXP
from .fake_server import FakeServer

flwr_client = pytest.importorskip("flwr.client")
from fma_client.flower import (  # noqa: E402
    INSTALL_HINT,
    FlowerMetricWarning,
    FlowerRunner,
    initial_weights,
)

BASE = f"{API}/v1/experiments/{EXP}"
INITIAL = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


class AddOne(flwr_client.NumPyClient):
    """Adds one to every array; remembers what it was given."""

    def __init__(self, fit_metrics=None, order=None):
        self.fits: list[tuple[list, dict]] = []
        self.evals: list[tuple[list, dict]] = []
        self.fit_metrics = fit_metrics or {}
        self.order = order  # reorder fit's output to simulate a mistake

    def get_parameters(self, config):
        return [np.ones(3), np.ones((2, 3))]

    def fit(self, parameters, config):
        self.fits.append(([p.copy() for p in parameters], dict(config)))
        out = [p + 1.0 for p in parameters]
        return ([out[i] for i in self.order] if self.order else out), 10, dict(self.fit_metrics)

    def evaluate(self, parameters, config):
        self.evals.append(([p.copy() for p in parameters], dict(config)))
        return float(parameters[0].sum()), 4, {"accuracy": 0.5 + 0.1 * config["server-round"]}


def serve_evaluations(http, status: int = 201) -> list[tuple[int, dict]]:
    posted: list[tuple[int, dict]] = []

    def post(request):
        n = int(request.url.split("/rounds/")[1].split("/")[0])
        posted.append((n, json.loads(request.body)))
        if status != 201:
            return status, {}, json.dumps({"error": {"code": "MODEL_NOT_FOUND", "message": "no"}})
        return 201, {}, json.dumps({"round": n, "client_id": "c1"})

    http.add_callback(responses.POST, re.compile(rf"{BASE}/rounds/\d+/evaluations"), post)
    return posted


def test_fit_sees_tensors_in_name_order_with_flower_config_and_its_output_is_submitted(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=2)
    serve_evaluations(http)
    flower = AddOne()

    history = FlowerRunner(flower, client, on_fit_config=lambda n: {"lr": 1.0 / n}).run()

    assert [r["round"] for r in history.rounds] == [1, 2]
    (params1, config1), (params2, config2) = flower.fits
    assert [p.shape for p in params1] == [(3,), (2, 3)]  # "b" before "w": sorted by name
    assert config1 == {"lr": 1.0, "round": 1, "server-round": 1, "server_round": 1}
    assert config2["server-round"] == 2 and config2["lr"] == 0.5
    np.testing.assert_array_equal(params2[1], np.ones((2, 3)))  # round 2 trains the published model
    submitted = server.submitted[1]["tensors"]
    np.testing.assert_array_equal(submitted["w"], np.full((2, 3), 2.0, np.float32))
    np.testing.assert_array_equal(submitted["b"], np.full(3, 2.0, np.float32))


def test_evaluate_runs_once_per_model_version_including_the_final_one(client: Client, http):
    FakeServer(http, INITIAL, total_rounds=2)
    posted = serve_evaluations(http)
    flower = AddOne()

    history = FlowerRunner(flower, client, on_evaluate_config=lambda v: {"split": f"val{v}"}).run()

    assert [n for n, _ in posted] == [0, 1, 2]
    assert [config["server-round"] for _, config in flower.evals] == [0, 1, 2]
    assert flower.evals[1][1] == {"lr": 0.5, "round": 1, "server-round": 1, "server_round": 1, "split": "val1"}
    assert posted[2][1] == {"num_examples": 4, "metrics": {"accuracy": 0.7, "loss": 6.0}}  # b == 2 after 2 rounds
    assert history.losses == [(0, 0.0), (1, 3.0), (2, 6.0)]
    assert history.metrics["accuracy"] == [(0, 0.5), (1, 0.6), (2, 0.7)]
    assert all(e["posted"] for e in history.evaluations)


def test_rounds_limit_stops_early_and_evaluates_the_latest_model(client: Client, http):
    FakeServer(http, INITIAL, total_rounds=5)
    posted = serve_evaluations(http)

    history = FlowerRunner(AddOne(), client).run(rounds=2)

    assert [r["round"] for r in history.rounds] == [1, 2]
    assert [n for n, _ in posted] == [0, 1, 2]


def test_names_override_sets_the_order_of_flowers_list(client: Client, http):
    FakeServer(http, INITIAL, total_rounds=1)
    serve_evaluations(http)
    flower = AddOne()

    FlowerRunner(flower, client, names=["w", "b"], evaluate=False).run()

    assert [p.shape for p in flower.fits[0][0]] == [(2, 3), (3,)]
    assert flower.evals == []


def test_arrays_in_the_wrong_order_fail_before_upload_with_the_fix(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=1)
    serve_evaluations(http)

    with pytest.raises(ValueError, match=r"pass names=\[\.\.\.\]"):
        FlowerRunner(AddOne(order=[1, 0]), client, evaluate=False).run()
    assert server.submitted == []


def test_non_numeric_flower_metrics_are_dropped_or_converted_with_a_warning(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=1)
    serve_evaluations(http)
    metrics = {"acc": np.float32(0.5), "steps": np.int64(7), "tag": "resnet", "raw": b"\x00", "done": True,
               "nan": float("nan")}  # fmt: skip

    with pytest.warns(FlowerMetricWarning) as caught:
        FlowerRunner(AddOne(fit_metrics=metrics), client, evaluate=False).run()

    assert json.loads(server.submitted[0]["meta"]["fma.metrics"]) == {"acc": 0.5, "done": 1, "steps": 7}
    text = " ".join(str(w.message) for w in caught)
    assert all(key in text for key in ("'tag'", "'raw'", "'nan'", "'done'"))


def test_a_refused_evaluation_does_not_stop_training(client: Client, http):
    FakeServer(http, INITIAL, total_rounds=2)
    serve_evaluations(http, status=404)

    history = FlowerRunner(AddOne(), client).run()

    assert [r["round"] for r in history.rounds] == [1, 2]
    assert [e["posted"] for e in history.evaluations] == [False, False, False]


def test_a_client_without_evaluate_is_only_trained(client: Client, http):
    class FitOnly(flwr_client.NumPyClient):
        def fit(self, parameters, config):
            return parameters, 3, {}

    FakeServer(http, INITIAL, total_rounds=1)
    posted = serve_evaluations(http)

    history = FlowerRunner(FitOnly(), client).run()

    assert [r["round"] for r in history.rounds] == [1] and posted == [] and history.evaluations == []


def test_zero_examples_from_fit_is_refused_locally(client: Client, http):
    class Empty(flwr_client.NumPyClient):
        def fit(self, parameters, config):
            return parameters, 0, {}

    server = FakeServer(http, INITIAL, total_rounds=1)
    with pytest.raises(ValueError, match="num_examples=0"):
        FlowerRunner(Empty(), client, evaluate=False).run()
    assert server.submitted == []


def test_to_client_wrapper_and_a_plain_flower_client_are_accepted(client: Client, http):
    from flwr.common import Code, FitRes, Status

    class LowLevel(flwr_client.Client):
        def fit(self, ins):
            return FitRes(Status(Code.OK, "ok"), ins.parameters, 5, {"k": 1})

    server = FakeServer(http, INITIAL, total_rounds=2)
    serve_evaluations(http)
    wrapped = AddOne()
    FlowerRunner(wrapped.to_client(), client, evaluate=False).run(rounds=1)
    FlowerRunner(LowLevel(), client).run(rounds=1)

    assert len(wrapped.fits) == 1
    assert server.submitted[1]["meta"]["fma.num_examples"] == "5"
    np.testing.assert_array_equal(server.submitted[1]["tensors"]["w"], np.ones((2, 3), np.float32))


def test_something_that_is_not_a_flower_client_is_a_type_error(client: Client):
    with pytest.raises(TypeError, match="NumPyClient"):
        FlowerRunner(object(), client)


def test_initial_weights_names_get_parameters():
    weights = initial_weights(AddOne(), ["b", "w"])
    assert {k: v.shape for k, v in weights.items()} == {"b": (3,), "w": (2, 3)}


def test_names_must_cover_the_model_exactly():
    assert model_names(INITIAL) == ["b", "w"]
    with pytest.raises(ValueError, match="missing"):
        model_names(INITIAL, ["w"])
    with pytest.raises(ValueError, match="repeated"):
        model_names(INITIAL, ["w", "b", "w"])
    with pytest.raises(ValueError, match="2 tensors"):
        to_weights([np.ones(3)], ["b", "w"], INITIAL)


def test_metric_limits_keep_the_first_names():
    metrics = {f"m{i:03d}": i for i in range(70)} | {"x" * 65: 1.0}
    with pytest.warns(FlowerMetricWarning):
        out = flower_metrics(metrics, limit=64)
    assert sorted(out) == [f"m{i:03d}" for i in range(64)]


def test_flower_is_imported_only_when_needed_and_its_absence_names_the_extra():
    code = (
        "import sys; sys.modules['flwr'] = None; sys.modules['flwr.client'] = None\n"
        "import fma_client, fma_client.flower as f\n"
        "try:\n    f.run_flower_client('http://127.0.0.1:9', 'e', object(), token='t')\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == INSTALL_HINT
    assert "pip install 'fma-client[flower]'" in INSTALL_HINT


def test_migration_guide_names_every_strategy_and_parameter_of_the_catalog():
    from pathlib import Path

    from fma.domain.strategy_catalog import CATALOG, DP_PARAMS

    guide = (Path(__file__).resolve().parents[2] / "docs" / "migrating-from-flower.md").read_text()
    builtin = ("fedavg", "fedprox", "fedavgm", "fedadagrad", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg",
               "krum", "multikrum", "bulyan")  # fmt: skip
    for name in builtin:
        assert f"`{name}`" in guide, name
        for param in CATALOG[name]:
            assert f"`{param}`" in guide, f"{name}.{param}"
    for param in DP_PARAMS:
        assert param in guide, f"dp.{param}"


def test_a_flower_client_runs_unchanged_in_async_mode(client: Client, http):
    """Issue 15: the same NumPyClient trains every version, never waiting for a round quota."""
    server = FakeServer(http, INITIAL, total_rounds=3)
    server.mode = "async"
    server.publish_after_polls = 10**6  # a wait for the round to publish would never end
    serve_evaluations(http)
    flower = AddOne()

    history = FlowerRunner(flower, client).run()

    assert [(r["round"], r["status"]) for r in history.rounds] == [(1, "ACCEPTED"), (2, "ACCEPTED"), (3, "ACCEPTED")]
    assert [config["server-round"] for _, config in flower.fits] == [1, 2, 3]
    np.testing.assert_array_equal(server.submitted[2]["tensors"]["w"], np.full((2, 3), 3.0, np.float32))
