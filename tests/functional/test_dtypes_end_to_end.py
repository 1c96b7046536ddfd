"""BF16, F16, 0-d and integer tensors end to end through the handlers (issues 11 and 17):
the initial model is accepted, updates validate, aggregation computes in float32 and the
published model keeps every name, dtype and shape; integer buffers follow docs/strategies.md."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from harness import update_bytes

from fma.domain.auth import Role
from fma.domain.codec import decode

BF16 = np.dtype(ml_dtypes.bfloat16)


def initial_model() -> dict[str, np.ndarray]:
    return {"conv/w": np.zeros((2, 3), BF16), "head/b": np.zeros(4, np.float16),
            "bn/scale": np.array(1.0, np.float32), "bn/num_batches_tracked": np.array(100, np.int64)}


def client_model(rng: np.random.Generator, i: int) -> dict[str, np.ndarray]:
    return {"conv/w": rng.standard_normal((2, 3)).astype(BF16), "head/b": rng.standard_normal(4).astype(np.float16),
            "bn/scale": np.array(1.0 + i, np.float32), "bn/num_batches_tracked": np.array(100 + 7 * i, np.int64)}


def run_round(stack, strategy: dict, counts=(1, 2, 5)):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, initial_model(), strategy=strategy,
                                     rounds={"min_updates": len(counts), "total_rounds": 2})
    assert stack.experiment(dev, exp_id)["status"] == "RUNNING"
    rng = np.random.default_rng(3)
    sent = []
    for i, (client_id, token) in enumerate(stack.enroll(dev, exp_id, len(counts))):
        tensors = client_model(rng, i)
        sent.append((tensors, counts[i]))
        assert stack.submit(exp_id, 1, token, update_bytes(tensors, counts[i], 1)).status == 202
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    [result] = stack.run_aggregations()
    assert result["status"] == "published", result
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["rejected"] == 0, rnd
    model, _ = decode(stack.get_object(f"models/{exp_id}/00000001.safetensors"))
    return model, sent


def test_fedavg_keeps_dtypes_and_0d_shapes_and_computes_in_float32(stack):
    model, sent = run_round(stack, {"name": "fedavg"})
    for name, ref in initial_model().items():
        assert model[name].dtype == ref.dtype and model[name].shape == ref.shape, name
    total = sum(n for _, n in sent)
    for name, rtol in (("conv/w", 2.0**-8), ("head/b", 2.0**-11), ("bn/scale", 1e-7)):
        mean64 = sum(t[name].astype(np.float64) * n for t, n in sent) / total
        np.testing.assert_allclose(model[name].astype(np.float64), mean64, rtol=rtol, atol=1e-3 * rtol)
    counters = sum(int(t["bn/num_batches_tracked"]) * n for t, n in sent) / total  # (100*1 + 107*2 + 114*5) / 8
    assert int(model["bn/num_batches_tracked"]) == round(counters)


@pytest.mark.parametrize("strategy", [{"name": "fedadam", "params": {"eta": 0.5}},
                                      {"name": "fedavgm", "params": {"server_momentum": 0.9}}])
def test_server_optimizers_leave_integer_buffers_at_the_clients_mean(stack, strategy):
    model, sent = run_round(stack, strategy)
    total = sum(n for _, n in sent)
    assert int(model["bn/num_batches_tracked"]) == round(
        sum(int(t["bn/num_batches_tracked"]) * n for t, n in sent) / total)
    assert model["bn/scale"].shape == () and model["conv/w"].dtype == BF16


def test_fedmedian_takes_the_median_of_integer_buffers(stack):
    model, _ = run_round(stack, {"name": "fedmedian"})
    assert int(model["bn/num_batches_tracked"]) == 107 and float(model["bn/scale"]) == 2.0


@pytest.mark.parametrize(("name", "bad"), [("conv/w", np.nan), ("head/b", np.inf)])
def test_a_non_finite_bf16_or_f16_value_is_rejected(stack, name, bad):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, initial_model(), rounds={"min_updates": 2, "total_rounds": 2})
    [(client_id, token)] = stack.enroll(dev, exp_id, 1)
    tensors = client_model(np.random.default_rng(0), 0)
    flat = tensors[name].astype(np.float32).reshape(-1)
    flat[1] = bad
    tensors[name] = flat.reshape(tensors[name].shape).astype(initial_model()[name].dtype)
    assert stack.submit(exp_id, 1, token, update_bytes(tensors, 3, 1)).status == 202
    stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    [update] = stack.round(dev, exp_id, 1)["updates"]
    assert update["status"] == "REJECTED" and update["reason"].startswith("NON_FINITE"), update
