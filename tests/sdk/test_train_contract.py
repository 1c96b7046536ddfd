"""`train_fn`'s return value is checked against `(weights, num_examples, metrics)`: a mistake is
reported in the user's terms, before anything is uploaded (the server sees nothing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fma_client import Client, TrainResultError

from .fake_server import FakeServer

INITIAL = {"w": np.zeros((2, 2), np.float32), "b": np.zeros(2, np.float32)}


def returning(value):
    return lambda weights, config: value(weights) if callable(value) else value


def updated(weights):
    return {k: v + 1.0 for k, v in weights.items()}


CASES = [
    ("a list instead of a dict",
     lambda w: ([w["w"], w["b"]], 10, {}),
     "train_fn: weights (the first value of (weights, num_examples, metrics)) must be a dict of name -> array; "
     "it is a list of 2 items (a list of arrays? name them: {name: array} as in the weights it received)"),
    ("only the weights dict",
     updated,
     "train_fn must return a tuple (weights, num_examples, metrics); it returned a dict "
     "(only the weights? return (weights, num_examples, metrics))"),
    ("two values",
     lambda w: (updated(w), 10),
     "train_fn must return 3 values (weights, num_examples, metrics); it returned 2: (a dict, an int (10)) "
     "-- metrics may be {} but must be there"),
    ("NaN num_examples",
     lambda w: (updated(w), math.nan, {}),
     "train_fn: num_examples must be a positive int; it is nan"),
    ("a string num_examples",
     lambda w: (updated(w), "10", {}),
     "train_fn: num_examples (the second value of (weights, num_examples, metrics)) must be a positive int; "
     "it is a str"),
    ("zero num_examples",
     lambda w: (updated(w), 0, {}),
     "train_fn: num_examples must be a positive int (examples trained on); it is 0"),
    ("a bool num_examples",
     lambda w: (updated(w), True, {}),
     "train_fn: num_examples (the second value of (weights, num_examples, metrics)) must be a positive int; "
     "it is a bool (True)"),
    ("metrics as a list",
     lambda w: (updated(w), 10, [0.5]),
     "train_fn: metrics (the third value of (weights, num_examples, metrics)) must be a dict of name -> number "
     "or None; it is a list of 1 item"),
    ("a NaN metric",
     lambda w: (updated(w), 10, {"loss": float("nan")}),
     "train_fn: metric 'loss' must be finite, got nan"),
    ("a missing tensor",
     lambda w: ({"w": w["w"]}, 10, {}),
     "train_fn: weights must have the model's tensors ['b', 'w']; missing ['b'], unknown []"),
    ("a wrong shape",
     lambda w: ({"w": w["w"].ravel(), "b": w["b"]}, 10, {}),
     "train_fn: weights['w'] has shape [4], the model's is [2, 2]"),
    ("a non-numeric tensor",
     lambda w: ({"w": "oops", "b": w["b"]}, 10, {}),
     "train_fn: weights['w'] must be a numeric array, it is a str"),
    ("None",
     lambda w: None,
     "train_fn must return a tuple (weights, num_examples, metrics); it returned None"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "result", "message"), CASES, ids=[c[0] for c in CASES])
def test_a_wrong_return_value_says_what_was_expected_and_what_came_back(client: Client, http, case, result, message):
    server = FakeServer(http, INITIAL, total_rounds=1)

    with pytest.raises(TrainResultError) as err:
        client.run(returning(result))
    assert str(err.value) == message
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)
    assert server.submitted == [] and server.rounds[1]["updates"] == []  # nothing reached the server


def test_integral_floats_numpy_counts_and_none_metrics_are_accepted(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=2)
    results = iter([(10.0, None), (np.int64(7), {"acc": np.float32(0.5)})])

    def train_fn(weights, config):
        count, metrics = next(results)
        return updated(weights), count, metrics

    assert [h["round"] for h in client.run(train_fn)] == [1, 2]
    assert [s["meta"]["fma.num_examples"] for s in server.submitted] == ["10", "7"]


def test_train_fn_may_replace_the_arrays_of_the_dict_it_was_given(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=1)

    def train_fn(weights, config):
        weights["w"] = weights["w"] + 2.0  # in place on the dict: shapes are checked against the model
        return weights, 5, {}

    client.run(train_fn)
    np.testing.assert_array_equal(server.submitted[0]["tensors"]["w"], np.full((2, 2), 2.0, np.float32))


def test_submit_checks_its_arguments_the_same_way(client: Client, http):
    server = FakeServer(http, INITIAL, total_rounds=1)
    client.get_model()

    with pytest.raises(TrainResultError, match=r"submit: weights .* it is a list of 2 items"):
        client.submit([INITIAL["w"], INITIAL["b"]], 10)
    with pytest.raises(TrainResultError, match="submit: num_examples must be a positive int; it is nan"):
        client.submit(INITIAL, math.nan)
    assert server.submitted == []
