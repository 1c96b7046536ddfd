"""Update metadata, the model spec and full validation of an update against it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fma.domain.codec import encode
from fma.domain.errors import UpdateRejected
from fma.domain.model_spec import ModelSpec
from fma.domain.safetensors_header import parse_header
from fma.domain.update_meta import check_metrics, parse_metrics, parse_update_meta
from fma.domain.validation import ValidationLimits as UpdateLimits
from fma.domain.validation import validate_update

MODEL = {"dense/kernel": np.zeros((2, 2), np.float32), "dense/bias": np.zeros(2, np.float32)}


def spec() -> ModelSpec:
    buf = encode(MODEL)
    return ModelSpec.from_header(parse_header(buf, total_size=len(buf)))


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises(UpdateRejected) as err:
        fn(*args, **kwargs)
    return err.value.code


def test_metadata_carries_examples_round_and_metrics():
    meta = parse_update_meta({"fma.num_examples": "12", "fma.round": "3", "fma.metrics": json.dumps({"loss": 1})})
    assert (meta.num_examples, meta.round, meta.metrics) == (12, 3, {"loss": 1.0})
    assert parse_update_meta({"fma.num_examples": "1"}).round is None


@pytest.mark.parametrize("meta,code", [
    ({}, "MISSING_NUM_EXAMPLES"),
    ({"fma.num_examples": "0"}, "BAD_NUM_EXAMPLES"),
    ({"fma.num_examples": "ten"}, "BAD_NUM_EXAMPLES"),
    ({"fma.num_examples": "1", "fma.round": "x"}, "BAD_ROUND"),
    ({"fma.num_examples": "1", "fma.metrics": "{"}, "BAD_METRICS"),
])
def test_bad_metadata_is_rejected(meta, code):
    assert code_of(parse_update_meta, meta) == code


@pytest.mark.parametrize("value", [[1], {"a": float("nan")}, {"a": True}, {"a": "1"}, {str(i): 1 for i in range(65)}])
def test_metrics_must_be_an_object_of_finite_numbers(value):
    assert code_of(check_metrics, value) == "BAD_METRICS"
    assert parse_metrics("") == {}


def test_spec_is_in_name_order_and_round_trips_as_json():
    s = spec()
    assert [t.name for t in s.tensors] == ["dense/bias", "dense/kernel"]
    assert ModelSpec.from_json(s.to_json()) == s
    assert (s.num_parameters, s.nbytes) == (6, 24)


@pytest.mark.parametrize("tensors,code", [
    ({"dense/kernel": np.zeros((2, 2), np.float32)}, "WRONG_TENSORS"),
    ({**MODEL, "extra": np.zeros(1, np.float32)}, "WRONG_TENSORS"),
    ({**MODEL, "dense/bias": np.zeros(2, np.float64)}, "WRONG_DTYPE"),
    ({**MODEL, "dense/bias": np.zeros(3, np.float32)}, "WRONG_SHAPE"),
])
def test_spec_names_the_first_difference(tensors, code):
    buf = encode(tensors)
    assert code_of(spec().check, parse_header(buf, total_size=len(buf))) == code


def test_a_valid_update_returns_its_facts():
    buf = encode({k: v + 1 for k, v in MODEL.items()}, {"fma.num_examples": "7", "fma.round": "2"})
    valid = validate_update(buf, spec(), UpdateLimits(max_update_bytes=1 << 20), expected_round=2)
    assert (valid.meta.num_examples, valid.size) == (7, len(buf))


def test_validation_refuses_size_round_non_finite_and_norm():
    meta = {"fma.num_examples": "7", "fma.round": "2"}
    ok = encode(MODEL, meta)
    assert code_of(validate_update, ok, spec(), UpdateLimits(max_update_bytes=10)) == "TOO_LARGE"
    assert code_of(validate_update, ok, spec(), UpdateLimits(1 << 20), expected_round=3) == "WRONG_ROUND"
    nan = encode({**MODEL, "dense/bias": np.array([np.nan, 0], np.float32)}, meta)
    assert code_of(validate_update, nan, spec(), UpdateLimits(1 << 20)) == "NON_FINITE"
    far = encode({k: v + 10 for k, v in MODEL.items()}, meta)
    limits = UpdateLimits(1 << 20, max_update_norm=1.0)
    arrays = {k: v.astype(np.float64).ravel() for k, v in MODEL.items()}

    def glob(name, start, count):  # a GlobalReader: elements [start, start + count) of a tensor
        return arrays[name][start : start + count]

    assert code_of(validate_update, far, spec(), limits, global_model=glob) == "NORM_TOO_LARGE"
