"""A Flower client, written the way Flower's scikit-learn quickstart writes it. Nothing here
knows about FMA: this is the code you already have (with digits instead of MNIST, so that
nothing is downloaded)."""

from __future__ import annotations

import warnings

import numpy as np
from flwr.client import NumPyClient
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

N_CLASSES, N_FEATURES = 10, 64


def get_model_parameters(model: LogisticRegression) -> list[np.ndarray]:
    """Returns the parameters of a sklearn LogisticRegression model."""
    if model.fit_intercept:
        return [model.coef_, model.intercept_]
    return [model.coef_]


def set_model_params(model: LogisticRegression, params: list[np.ndarray]) -> LogisticRegression:
    """Sets the parameters of a sklearn LogisticRegression model."""
    model.coef_ = params[0]
    if model.fit_intercept:
        model.intercept_ = params[1]
    return model


def set_initial_params(model: LogisticRegression) -> None:
    """Zeros: the model has no parameters until it is fitted, but the server needs some."""
    model.classes_ = np.arange(N_CLASSES)
    model.coef_ = np.zeros((N_CLASSES, N_FEATURES))
    if model.fit_intercept:
        model.intercept_ = np.zeros((N_CLASSES,))


def load_data(partition_id: int, num_partitions: int):
    """An IID partition of digits, split 80/20 into local train and test data."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(42).permutation(len(y))
    part = np.array_split(order, num_partitions)[partition_id]
    x, y = x[part] / 16.0, y[part]
    cut = int(0.8 * len(x))
    return x[:cut], x[cut:], y[:cut], y[cut:]


class DigitsClient(NumPyClient):
    def __init__(self, model, x_train, x_test, y_train, y_test):
        self.model = model
        self.x_train, self.x_test, self.y_train, self.y_test = x_train, x_test, y_train, y_test

    def get_parameters(self, config):
        return get_model_parameters(self.model)

    def fit(self, parameters, config):
        set_model_params(self.model, parameters)
        with warnings.catch_warnings():  # ignore convergence warnings of a short local epoch
            warnings.simplefilter("ignore")
            self.model.fit(self.x_train, self.y_train)
        print(f"Training finished for round {config['server_round']}")
        return get_model_parameters(self.model), len(self.x_train), {}

    def evaluate(self, parameters, config):
        set_model_params(self.model, parameters)
        loss = log_loss(self.y_test, self.model.predict_proba(self.x_test), labels=np.arange(N_CLASSES))
        accuracy = self.model.score(self.x_test, self.y_test)
        return loss, len(self.x_test), {"accuracy": accuracy}


def client_fn(partition_id: int, num_partitions: int):
    """What Flower's `ClientApp` would call: one client for one partition of the data."""
    x_train, x_test, y_train, y_test = load_data(partition_id, num_partitions)
    model = LogisticRegression(max_iter=1, warm_start=True)  # one local epoch, keep weights
    set_initial_params(model)
    return DigitsClient(model, x_train, x_test, y_train, y_test).to_client()
