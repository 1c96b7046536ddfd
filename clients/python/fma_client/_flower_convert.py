"""Flower's ordered list of arrays <-> FMA's named tensors, and Flower metrics -> FMA metrics.

Flower passes a model as a plain list of arrays; FMA names every tensor. The two meet through
the model spec: the global model's tensors sorted by name (the order the server keeps them in).
A client whose list has another order (a PyTorch `state_dict` puts `weight` before `bias`)
passes its own `names`. Nothing here imports Flower.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fma_client.tensors import MAX_METRIC_NAME, MAX_METRICS, Weights


class FlowerMetricWarning(UserWarning):
    """A Flower metric that FMA cannot store (text, bytes, NaN) was dropped or converted."""


def model_names(weights: Mapping[str, Any], names: Sequence[str] | None = None) -> list[str]:
    """The order in which tensors are handed to Flower: `names`, else the model's names sorted.

    `names` must name every tensor of the model exactly once; a mistake would silently feed
    the wrong arrays to the wrong layers, so it raises ValueError instead.
    """
    if names is None:
        return sorted(weights)
    names = list(names)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    missing, unexpected = sorted(set(weights) - set(names)), sorted(set(names) - set(weights))
    if duplicates or missing or unexpected:
        raise ValueError(
            f"names={names} does not match the model's tensors {sorted(weights)}: "
            f"missing {missing}, unknown {unexpected}, repeated {duplicates}"
        )
    return names


def to_arrays(weights: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """Flower's `parameters`: the model's arrays in `names` order."""
    return [weights[name] for name in names]


def to_weights(
    arrays: Sequence[Any], names: Sequence[str], reference: Mapping[str, np.ndarray] | None = None,
    what: str = "fit",
) -> Weights:  # fmt: skip
    """Name Flower's list of arrays; with `reference` (the global model), check every shape.

    The check runs before anything is uploaded so that an ordering mistake is reported here,
    with the fix, rather than as a WRONG_SHAPE rejection from the server.
    """
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence):
        raise TypeError(f"{what} must return a list of arrays (Flower's NDArrays), got {type(arrays).__name__}")
    if len(arrays) != len(names):
        raise ValueError(f"{what} returned {len(arrays)} arrays but the model has {len(names)} tensors {list(names)}")
    out: Weights = {}
    for position, (name, value) in enumerate(zip(names, arrays, strict=True)):
        arr = np.asarray(value)
        if reference is not None and arr.shape != reference[name].shape:
            order = [f"{n}{list(reference[n].shape)}" for n in names]
            raise ValueError(
                f"{what} returned shape {list(arr.shape)} at position {position}, but tensor {name!r} has shape "
                f"{list(reference[name].shape)}. Flower's list maps to the model's tensors in this order: {order}. "
                "If your get_parameters/fit list them in another order, pass names=[...] in that order."
            )
        out[name] = arr
    return out


def flower_metrics(metrics: Mapping[str, Any] | None, what: str = "fit", limit: int = MAX_METRICS) -> dict[str, Any]:
    """Flower's `Dict[str, Scalar]` as FMA metrics: finite numbers under short names.

    Flower allows bool, bytes, str and any float; FMA stores numbers it can average by
    num_examples. Booleans become 0/1; text, bytes, NaN and infinities are dropped; names
    longer than the server accepts are dropped; beyond `limit` metrics the first by name are
    kept. Each loss is announced with a FlowerMetricWarning, never raised: a stray metric must
    not cost a round of training.
    """
    if not metrics:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{what} metrics must be a dict (Flower's Dict[str, Scalar]), got {type(metrics).__name__}")
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_METRIC_NAME:
            _warn(f"{what} metric name {key!r} is not a string of 1..{MAX_METRIC_NAME} characters; dropped")
            continue
        number = _as_number(value)
        if number is None:
            _warn(f"{what} metric {key!r}={_short(value)} is not a finite number; dropped (FMA metrics are numbers)")
            continue
        if isinstance(value, bool | np.bool_):
            _warn(f"{what} metric {key!r}={value} is a bool; sent as {number}")
        out[key] = number
    if len(out) > limit:
        dropped = sorted(out)[limit:]
        _warn(f"{what} returned {len(out)} metrics; FMA keeps {limit} per report, dropped {dropped}")
        out = {k: out[k] for k in sorted(out)[:limit]}
    return out


def _as_number(value: Any) -> int | float | None:
    if (isinstance(value, np.ndarray) and value.ndim == 0) or isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _warn(message: str) -> None:
    warnings.warn(message, FlowerMetricWarning, stacklevel=4)
