"""Bring your Flower client: run an unchanged `flwr.client.NumPyClient` in an FMA experiment.

    from fma_client.flower import run_flower_client

    history = run_flower_client(url, experiment_id, MyFlowerClient(...), enrollment_token=token)

Each round the adapter pulls the global model, calls the client's `evaluate` on it (once per
model version, posted as an evaluation of that version) and `fit` with Flower's config, and
submits what `fit` returned as the update, with its `num_examples` and metrics. After the
last round it evaluates the final model too.

Tensor order. Flower speaks in an ordered list of arrays, FMA in named tensors. The list maps
to the experiment's model spec, whose tensors are sorted by name: a model `{"coef": ...,
"intercept": ...}` is `[coef, intercept]`. If your `get_parameters`/`fit` use another order
(a PyTorch `state_dict` lists `fc.weight` before `fc.bias`), pass `names=[...]` in that order.
Shapes are checked before anything is uploaded.

Config. `fit` gets the experiment's `client_config` plus `server-round` (Flower's key),
`server_round` (the key of Flower's older quickstarts) and `round`, all set to the round being
trained, and whatever `on_fit_config(round)` returns. `evaluate` gets the same with the round
set to the evaluated model's version (0 = the initial model), plus `on_evaluate_config(version)`.

Metrics. FMA stores numbers: booleans become 0/1, text, bytes and non-finite values are
dropped with a `FlowerMetricWarning`. An evaluation is posted as `{"loss": loss, **metrics}`.

This module imports Flower only when a client is run, so `fma_client` works without it; install
the extra with `pip install 'fma-client[flower]'`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fma_client._flower_client import INSTALL_HINT, NumPyLike, as_numpy_client, require_flwr, unpack
from fma_client._flower_convert import (
    FlowerMetricWarning,
    flower_metrics,
    model_names,
    to_arrays,
    to_weights,
)
from fma_client.client import Client
from fma_client.errors import FmaError
from fma_client.tensors import MAX_METRICS, Weights

__all__ = [
    "INSTALL_HINT",
    "FlowerHistory",
    "FlowerMetricWarning",
    "FlowerRunner",
    "initial_weights",
    "model_names",
    "run_flower_client",
    "to_arrays",
    "to_weights",
]

log = logging.getLogger("fma_client.flower")
Json = dict[str, Any]
ConfigFn = Callable[[int], Mapping[str, Any]]


@dataclass
class FlowerHistory:
    """What one client did: its rounds (as `Client.run` reports them) and its evaluations.

    `evaluations` holds one entry per model version evaluated: `round` (the version),
    `loss`, `num_examples`, `metrics` and `posted` (False if the server refused it).
    """

    client_id: str | None
    rounds: list[Json] = field(default_factory=list)
    evaluations: list[Json] = field(default_factory=list)

    @property
    def losses(self) -> list[tuple[int, float]]:
        """`[(version, loss)]` of this client's evaluations, like Flower's `History.losses_distributed`."""
        return [(e["round"], e["loss"]) for e in self.evaluations if e["loss"] is not None]

    @property
    def metrics(self) -> dict[str, list[tuple[int, float]]]:
        """`{name: [(version, value)]}` of this client's evaluation metrics."""
        out: dict[str, list[tuple[int, float]]] = {}
        for e in self.evaluations:
            for key, value in e["metrics"].items():
                out.setdefault(key, []).append((e["round"], value))
        return out


class FlowerRunner:
    """Drives one Flower client through an FMA experiment with an SDK `Client` (see module doc).

    `run_flower_client` builds one; build it yourself to reuse a configured `Client`.
    """

    def __init__(
        self,
        client: Any,
        fma: Client,
        names: Sequence[str] | None = None,
        *,
        evaluate: bool = True,
        on_fit_config: ConfigFn | None = None,
        on_evaluate_config: ConfigFn | None = None,
    ) -> None:
        self.flower: NumPyLike
        self.flower, can_evaluate = as_numpy_client(client)
        self.fma = fma
        self.names = list(names) if names is not None else None
        self.evaluate_enabled = evaluate and can_evaluate
        self.on_fit_config = on_fit_config
        self.on_evaluate_config = on_evaluate_config
        self.history = FlowerHistory(client_id=fma.client_id)
        self._evaluated: set[int] = set()

    def run(
        self, rounds: int | None = None, round_timeout: float = 3600.0, update_timeout: float = 600.0
    ) -> FlowerHistory:
        """Train until the experiment ends (or for `rounds` rounds), then evaluate the last model."""
        self.history.rounds = self.fma.run(self._train, rounds, round_timeout=round_timeout,
                                           update_timeout=update_timeout)  # fmt: skip
        self.history.client_id = self.fma.client_id
        if self.evaluate_enabled:
            self._evaluate_latest()
        return self.history

    def _train(self, weights: Weights, config: dict[str, Any]) -> tuple[Weights, int, dict[str, Any]]:
        """`Client.run`'s training function: evaluate the new global model, then `fit`."""
        names = model_names(weights, self.names)
        n = int(config["round"])
        if self.evaluate_enabled:
            self._evaluate(weights, names, self._version(), config)
        fit_config = self._config(config, n, self.on_fit_config)
        result = self.flower.fit(to_arrays(weights, names), fit_config)
        arrays, num_examples, metrics = unpack(result, "fit")
        if num_examples <= 0:
            raise ValueError(f"fit returned num_examples={num_examples}; FMA weights updates by it, so it must be > 0")
        return to_weights(arrays, names, weights, "fit"), num_examples, flower_metrics(metrics, "fit")

    def _version(self) -> int | None:
        return self.fma.model.version if self.fma.model else None

    @staticmethod
    def _config(config: Mapping[str, Any], n: int, extra: ConfigFn | None) -> dict[str, Any]:
        out = {**config, "round": n, "server-round": n, "server_round": n}
        if extra is not None:
            out.update(extra(n))
        return out

    def _evaluate_latest(self) -> None:
        """Evaluate the model the experiment ended with (or the latest one after `rounds`)."""
        try:
            weights, _, config = self.fma.get_model()
        except FmaError as exc:
            log.warning("could not fetch the final model to evaluate it: %s", exc)
            return
        self._evaluate(weights, model_names(weights, self.names), self._version(), config)

    def _evaluate(self, weights: Weights, names: list[str], version: int | None, config: Mapping[str, Any]) -> None:
        """Call `evaluate` once per model version and post the result as its evaluation."""
        if version is None or version in self._evaluated:
            return
        self._evaluated.add(version)
        arrays = [a.copy() for a in to_arrays(weights, names)]  # fit must not see evaluate's edits
        result = self.flower.evaluate(arrays, self._config(config, version, self.on_evaluate_config))
        loss, num_examples, metrics = unpack(result, "evaluate")
        entry = {"round": version, "loss": _finite(loss), "num_examples": num_examples,
                 "metrics": flower_metrics(metrics, "evaluate", MAX_METRICS - 1), "posted": False}  # fmt: skip
        self.history.evaluations.append(entry)
        if num_examples <= 0:
            log.warning("evaluate of model %d returned num_examples=%d; not posted", version, num_examples)
            return
        report = dict(entry["metrics"])
        if entry["loss"] is not None:
            if "loss" in report and report["loss"] != entry["loss"]:
                log.warning("evaluate returned a metric named 'loss'; the returned loss takes its place")
            report["loss"] = entry["loss"]
        try:
            self.fma.evaluate(version, num_examples, report)
        except FmaError as exc:  # an evaluation is a report: losing one must not stop training
            log.warning("evaluation of model %d not posted: %s", version, exc)
            return
        entry["posted"] = True
        log.info("model %d evaluated: loss %s on %d examples", version, entry["loss"], num_examples)


def _finite(loss: Any) -> float | None:
    try:
        value = float(loss)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        log.warning("evaluate returned loss=%r, which is not a finite number; not reported", loss)
        return None
    return value


def run_flower_client(
    url: str,
    experiment_id: str,
    client: Any,
    enrollment_token: str | None = None,
    token: str | None = None,
    rounds: int | None = None,
    *,
    names: Sequence[str] | None = None,
    evaluate: bool = True,
    on_fit_config: ConfigFn | None = None,
    on_evaluate_config: ConfigFn | None = None,
    client_id: str | None = None,
    name: str | None = None,
    round_timeout: float = 3600.0,
    update_timeout: float = 600.0,
    **client_options: Any,
) -> FlowerHistory:
    """Run a Flower `NumPyClient` in FMA experiment `experiment_id` until it ends (or `rounds`).

    Join with an `enrollment_token` (the client registers itself) or a client `token` from an
    earlier registration (with its `client_id`). `names` overrides the tensor order (module
    doc). `client_options` go to `fma_client.Client` (`session`, `timeout`, `retry`,
    `poll_interval`, ...). Returns the client's `FlowerHistory`.
    """
    require_flwr()
    fma = Client(url, experiment_id, token=token, enrollment_token=enrollment_token, name=name,
                 client_id=client_id, **client_options)  # fmt: skip
    with fma:  # releases the registration slot at the end (another client may then take it)
        runner = FlowerRunner(client, fma, names, evaluate=evaluate, on_fit_config=on_fit_config,
                              on_evaluate_config=on_evaluate_config)  # fmt: skip
        return runner.run(rounds, round_timeout=round_timeout, update_timeout=update_timeout)


def initial_weights(client: Any, names: Sequence[str], config: Mapping[str, Any] | None = None) -> Weights:
    """The Flower client's `get_parameters(config)` named by `names`: an FMA initial model.

    The FMA counterpart of Flower's `initial_parameters`: create the experiment with
    `Developer.create_experiment(name, initial_weights(client, ["coef", "intercept"]))`.
    """
    flower, _ = as_numpy_client(client)
    return to_weights(flower.get_parameters(dict(config or {})), list(names), what="get_parameters")
