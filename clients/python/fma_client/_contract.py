"""The training function's contract: `train_fn(weights, config) -> (weights, num_examples, metrics)`.

Checked before anything is encoded or uploaded, so a mistake in the user's code is reported in
the user's terms (what was expected, what came back) instead of as a numpy or unpacking error
from deep inside the SDK, or as a server-side rejection a round later.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from fma_client.errors import TrainResultError
from fma_client.tensors import Weights, clean_metrics

CONTRACT = "(weights, num_examples, metrics)"


def check_train_result(result: Any, shapes: Mapping[str, tuple[int, ...]] | None, what: str = "train_fn") -> tuple[
    dict[str, Any], int, dict[str, int | float]
]:  # fmt: skip
    """`(weights, num_examples, metrics)` checked against `shapes`, the model it was given."""
    if not isinstance(result, tuple | list) or isinstance(result, np.ndarray):
        hint = " (only the weights? return (weights, num_examples, metrics))" if isinstance(result, Mapping) else ""
        raise TrainResultError(f"{what} must return a tuple {CONTRACT}; it returned {_kind(result)}{hint}")
    if len(result) != 3:
        got = ", ".join(_kind(item) for item in result)
        raise TrainResultError(
            f"{what} must return 3 values {CONTRACT}; it returned {len(result)}: ({got})"
            + (" -- metrics may be {} but must be there" if len(result) == 2 else "")
        )
    weights, num_examples, metrics = result
    return (
        check_weights(weights, shapes, what),
        check_num_examples(num_examples, what),
        check_metrics(metrics, what),
    )


def check_weights(weights: Any, shapes: Mapping[str, tuple[int, ...]] | None, what: str = "train_fn") -> dict[str, Any]:
    """A dict of name -> array with the model's names and `shapes` (when given)."""
    if not isinstance(weights, Mapping):
        hint = " (a list of arrays? name them: {name: array} as in the weights it received)"
        raise TrainResultError(
            f"{what}: weights (the first value of {CONTRACT}) must be a dict of name -> array; "
            f"it is {_kind(weights)}" + (hint if isinstance(weights, list | tuple) else "")
        )
    out: dict[str, Any] = {}
    for name, value in weights.items():
        arr = _as_array(value)
        if arr is None or not (arr.dtype.kind in "biuf" or arr.dtype.name == "bfloat16"):
            raise TrainResultError(f"{what}: weights[{name!r}] must be a numeric array, it is {_kind(value)}")
        out[name] = arr
    if shapes is not None:
        _compare(out, shapes, what)
    return out


def check_num_examples(value: Any, what: str = "train_fn") -> int:
    """A positive integer; integral floats (100.0) are accepted, NaN and fractions are not."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TrainResultError(
            f"{what}: num_examples (the second value of {CONTRACT}) must be a positive int; it is {_kind(value)}"
        )
    if not isinstance(value, numbers.Integral):
        number = float(value)
        if not math.isfinite(number) or not number.is_integer():
            raise TrainResultError(f"{what}: num_examples must be a positive int; it is {value!r}")
        value = int(number)
    if value <= 0:
        raise TrainResultError(f"{what}: num_examples must be a positive int (examples trained on); it is {value}")
    return int(value)


def check_metrics(metrics: Any, what: str = "train_fn") -> dict[str, int | float]:
    """None or a dict of finite numbers."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TrainResultError(
            f"{what}: metrics (the third value of {CONTRACT}) must be a dict of name -> number or None; "
            f"it is {_kind(metrics)}"
        )
    try:
        return clean_metrics(metrics)
    except ValueError as exc:
        raise TrainResultError(f"{what}: {exc}") from None


def _compare(weights: Weights, shapes: Mapping[str, tuple[int, ...]], what: str) -> None:
    missing, unknown = sorted(set(shapes) - set(weights)), sorted(set(weights) - set(shapes))
    if missing or unknown:
        raise TrainResultError(
            f"{what}: weights must have the model's tensors {sorted(shapes)}; missing {missing}, unknown {unknown}"
        )
    for name, shape in shapes.items():
        if weights[name].shape != tuple(shape):
            raise TrainResultError(
                f"{what}: weights[{name!r}] has shape {list(weights[name].shape)}, the model's is {list(shape)}"
            )


def _as_array(value: Any) -> np.ndarray | None:
    try:
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, even one that requires grad
            value = value.detach().cpu().numpy()
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _kind(value: Any) -> str:
    """`a list of 3 items`, `a dict`, `a float (nan)`: what came back, in a few words."""
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    if isinstance(value, list | tuple):
        return f"{article} {name} of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {list(value.shape)}"
    if isinstance(value, np.generic):
        return f"a numpy {name} ({value.item()!r})"
    if isinstance(value, bool | int | float):
        return f"{article} {name} ({value!r})"
    if value is None:
        return "None"
    return f"{article} {name}"
