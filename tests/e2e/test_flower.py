"""End to end: three unchanged Flower NumPyClients (scikit-learn, as in Flower's quickstart)
train three FedAvg rounds through `fma_client.flower` against local mode over real HTTP."""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from local_mode import local_mode

from fma.local.digits import load_split
from fma_client import Developer

pytestmark = pytest.mark.e2e
flwr_client = pytest.importorskip("flwr.client")
sklearn_linear = pytest.importorskip("sklearn.linear_model")
from sklearn.metrics import log_loss  # noqa: E402

from fma_client.flower import run_flower_client  # noqa: E402

NUM_CLIENTS, ROUNDS = 3, 3


# -- the Flower client, written the way Flower's scikit-learn quickstart writes it ----------


def get_model_parameters(model):
    return [model.coef_, model.intercept_] if model.fit_intercept else [model.coef_]


def set_model_params(model, params):
    model.coef_ = params[0]
    if model.fit_intercept:
        model.intercept_ = params[1]
    return model


def set_initial_params(model):
    model.classes_ = np.arange(10)
    model.coef_ = np.zeros((10, 64))
    if model.fit_intercept:
        model.intercept_ = np.zeros((10,))


class DigitsClient(flwr_client.NumPyClient):
    def __init__(self, model, x_train, x_test, y_train, y_test):
        self.model, self.x_train, self.x_test, self.y_train, self.y_test = model, x_train, x_test, y_train, y_test

    def get_parameters(self, config):
        return get_model_parameters(self.model)

    def fit(self, parameters, config):
        set_model_params(self.model, parameters)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(self.x_train, self.y_train)
        return get_model_parameters(self.model), len(self.x_train), {}

    def evaluate(self, parameters, config):
        set_model_params(self.model, parameters)
        loss = log_loss(self.y_test, self.model.predict_proba(self.x_test))
        accuracy = self.model.score(self.x_test, self.y_test)
        return loss, len(self.x_test), {"accuracy": accuracy}


# -- test instrumentation: remember what fit and evaluate returned, untouched otherwise ------


class RecordingClient(DigitsClient):
    lock = threading.Lock()

    def __init__(self, *args, log: dict):
        super().__init__(*args)
        self.log = log

    def fit(self, parameters, config):
        params, n, metrics = super().fit(parameters, config)
        with self.lock:
            self.log["fit"].append((config["server-round"], [np.array(p) for p in params], n, dict(config)))
        return params, n, metrics

    def evaluate(self, parameters, config):
        loss, n, metrics = super().evaluate(parameters, config)
        with self.lock:
            self.log["evaluate"].append((config["server-round"], loss, n, dict(metrics)))
        return loss, n, metrics


def make_clients(log: dict) -> list[RecordingClient]:
    split = load_split(NUM_CLIENTS, seed=0, alpha=1.0)  # non-IID label shares, every label present
    tests = np.array_split(np.arange(len(split.y_test)), NUM_CLIENTS)
    clients = []
    for idx, test in zip(split.client_indices, tests, strict=True):
        model = sklearn_linear.LogisticRegression(max_iter=1, warm_start=True)
        set_initial_params(model)
        clients.append(RecordingClient(model, split.x_train[idx], split.x_test[test], split.y_train[idx],
                                       split.y_test[test], log=log))  # fmt: skip
    return clients


def weighted(entries: list[tuple[np.ndarray, int]]) -> np.ndarray:
    total = sum(n for _, n in entries)
    return sum(arr.astype(np.float64) * n for arr, n in entries) / total


def test_unchanged_flower_clients_train_fedavg_rounds_with_evaluations(tmp_path):
    log: dict = {"fit": [], "evaluate": []}
    clients = make_clients(log)
    initial = {"coef": np.zeros((10, 64)), "intercept": np.zeros(10)}
    with local_mode(tmp_path / "state") as (url, admin):
        dev = Developer(url, admin)
        exp = dev.create_experiment("flower-digits", initial, strategy="fedavg",
                                    rounds={"min_updates": NUM_CLIENTS, "total_rounds": ROUNDS},
                                    client_config={"local-epochs": 1})  # fmt: skip
        enroll = dev.enrollment_token(exp["id"], max_uses=NUM_CLIENTS)["token"]
        with ThreadPoolExecutor(NUM_CLIENTS) as pool:
            futures = [pool.submit(run_flower_client, url, exp["id"], c, enrollment_token=enroll,
                                   round_timeout=90, poll_interval=0.2) for c in clients]  # fmt: skip
            histories = [f.result(timeout=240) for f in futures]
        published = {n: dev.download_model(exp["id"], n) for n in range(1, ROUNDS + 1)}
        rounds = {r["round"]: r for r in dev.rounds(exp["id"])}

    # Every client fit every round with Flower's config, and was evaluated on every model version.
    assert sorted(r for r, *_ in log["fit"]) == [n for n in range(1, ROUNDS + 1) for _ in range(NUM_CLIENTS)]
    assert all(cfg["server-round"] == r and cfg["local-epochs"] == 1 for r, _, _, cfg in log["fit"])
    for h in histories:
        assert [e["round"] for e in h.evaluations] == list(range(ROUNDS + 1))
        assert all(e["posted"] for e in h.evaluations)
        assert [r["round"] for r in h.rounds] == list(range(1, ROUNDS + 1))

    # The published model of each round is the num_examples-weighted FedAvg of what fit returned.
    for n in range(1, ROUNDS + 1):
        fits = [(params, num) for r, params, num, _ in log["fit"] if r == n]
        for i, name in enumerate(["coef", "intercept"]):
            expected = weighted([(params[i], num) for params, num in fits])
            np.testing.assert_allclose(published[n][name], expected, rtol=1e-6, atol=1e-9)

    # Evaluations are listed with their round, averaged by num_examples, and accuracy rises.
    accuracy = {}
    for n in range(ROUNDS + 1):
        evals = [(np.float64(m["accuracy"]), num) for r, _, num, m in log["evaluate"] if r == n]
        accuracy[n] = float(weighted(evals))
        if n > 0:
            assert rounds[n]["evaluations"] == NUM_CLIENTS
            assert set(rounds[n]["evaluation_metrics"]) == {"accuracy", "loss"}
            assert rounds[n]["evaluation_metrics"]["accuracy"] == pytest.approx(accuracy[n], rel=1e-9)
    assert accuracy[0] < accuracy[1] < accuracy[ROUNDS], accuracy
    assert rounds[ROUNDS]["evaluation_metrics"]["loss"] < rounds[1]["evaluation_metrics"]["loss"]
