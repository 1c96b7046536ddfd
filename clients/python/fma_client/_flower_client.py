"""The Flower side of the adapter: import flwr lazily and see any Flower client as a NumPyClient.

Accepted: a `flwr.client.NumPyClient`, the wrapper its `.to_client()` returns (what a Flower
`client_fn` usually hands back), and a plain `flwr.client.Client` (FitIns/FitRes), which is
bridged with Flower's own `ndarrays_to_parameters`/`parameters_to_ndarrays`.
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any, Protocol

INSTALL_HINT = "fma_client.flower needs Flower (flwr). Install it with: pip install 'fma-client[flower]'"

FitResult = tuple[list[Any], int, dict[str, Any]]
EvaluateResult = tuple[float, int, dict[str, Any]]


class NumPyLike(Protocol):
    """What the adapter calls: NumPyClient's `fit` and `evaluate` (and `get_parameters`)."""

    def get_parameters(self, config: dict[str, Any]) -> list[Any]: ...

    def fit(self, parameters: list[Any], config: dict[str, Any]) -> FitResult: ...

    def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> EvaluateResult: ...


def require_flwr() -> ModuleType:
    """`flwr.client`, or an ImportError that says how to install the extra."""
    try:
        import flwr.client
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return flwr.client


def as_numpy_client(client: Any) -> tuple[NumPyLike, bool]:
    """`(client as a NumPyClient, whether it implements evaluate)`; TypeError for anything else."""
    flwr_client = require_flwr()
    inner = getattr(client, "numpy_client", None)  # NumPyClient.to_client() keeps the original here
    if isinstance(inner, flwr_client.NumPyClient):
        client = inner
    if isinstance(client, flwr_client.NumPyClient):
        return client, type(client).evaluate is not flwr_client.NumPyClient.evaluate
    if isinstance(client, flwr_client.Client):
        return _ClientAsNumPy(client), type(client).evaluate is not flwr_client.Client.evaluate
    raise TypeError(
        f"expected a flwr.client.NumPyClient (or flwr.client.Client), got {type(client).__name__}; "
        "for plain Python training code use fma_client.Client.run(train_fn) instead"
    )


class _ClientAsNumPy:
    """A `flwr.client.Client` behind NumPyClient's signatures, with Flower's own converters."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get_parameters(self, config: dict[str, Any]) -> list[Any]:
        from flwr.common import GetParametersIns, parameters_to_ndarrays

        res = self.client.get_parameters(GetParametersIns(config=config))
        _check_status(res, "get_parameters")
        return parameters_to_ndarrays(res.parameters)

    def fit(self, parameters: list[Any], config: dict[str, Any]) -> FitResult:
        from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays

        res = self.client.fit(FitIns(parameters=ndarrays_to_parameters(parameters), config=config))
        _check_status(res, "fit")
        return parameters_to_ndarrays(res.parameters), res.num_examples, dict(res.metrics)

    def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> EvaluateResult:
        from flwr.common import EvaluateIns, ndarrays_to_parameters

        res = self.client.evaluate(EvaluateIns(parameters=ndarrays_to_parameters(parameters), config=config))
        _check_status(res, "evaluate")
        return res.loss, res.num_examples, dict(res.metrics)


def _check_status(res: Any, what: str) -> None:
    from flwr.common import Code

    status = getattr(res, "status", None)
    if status is not None and status.code != Code.OK:
        raise RuntimeError(f"Flower client {what} failed: {status.code.name} {status.message}")


def unpack(result: Any, what: str) -> tuple[Any, int, Any]:
    """`(first, num_examples, metrics)` from fit's or evaluate's 3-tuple, checked as Flower does."""
    if not isinstance(result, tuple | list) or len(result) != 3:
        raise TypeError(f"{what} must return a 3-tuple as Flower's NumPyClient does, got {type(result).__name__}")
    first, num_examples, metrics = result
    if isinstance(num_examples, bool) or not isinstance(num_examples, numbers.Integral):
        raise TypeError(f"{what} returned num_examples={num_examples!r}; Flower and FMA expect an int")
    return first, int(num_examples), metrics
