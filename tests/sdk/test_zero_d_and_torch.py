"""0-d tensors keep their shape through the SDK, and fma_client.torch round-trips a state_dict
with BatchNorm buffers (dtypes, 0-d shapes) through a federated run against the fake server."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fma_client import Client, tensors

from .fake_server import FakeServer

BN_MODEL = {
    "fc.weight": np.zeros((2, 3), np.float32),
    "bn.running_mean": np.zeros(2, np.float32),
    "bn.num_batches_tracked": np.array(0, np.int64),
}


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32, np.float64, np.float16, np.uint8, np.bool_])
def test_a_0d_tensor_keeps_its_shape_and_dtype_through_encode_and_decode(dtype):
    decoded = tensors.decode(tensors.encode({"x": np.array(1, dtype), "v": np.ones(3, dtype=dtype)}))
    assert decoded["x"].shape == () and decoded["x"].dtype == dtype
    assert decoded["v"].shape == (3,)


def test_a_non_contiguous_array_is_still_encoded_in_row_major_order():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3).T
    np.testing.assert_array_equal(tensors.decode(tensors.encode({"t": arr}))["t"], arr)


def test_a_model_with_a_0d_integer_buffer_trains_under_fedavg(client: Client, http):
    server = FakeServer(http, BN_MODEL, total_rounds=2)

    def train_fn(weights, config):
        assert weights["bn.num_batches_tracked"].shape == ()
        out = {k: v + 1 for k, v in weights.items()}
        return out, 10, {}

    client.run(train_fn)
    sent = [s["tensors"]["bn.num_batches_tracked"] for s in server.submitted]
    assert [(t.shape, t.dtype, int(t)) for t in sent] == [((), np.int64, 1), ((), np.int64, 2)]
    final, _, _ = client.get_model()
    assert final["bn.num_batches_tracked"].shape == () and int(final["bn.num_batches_tracked"]) == 2


def _torch():
    import torch

    return torch


class TestTorchHelpers:
    @pytest.fixture(autouse=True)
    def _require_torch(self):
        pytest.importorskip("torch", reason="torch is installed by `make install` (clients/python[torch])")

    def net(self):
        torch = _torch()
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))

    def test_state_dict_to_numpy_keeps_buffers_dtypes_and_0d_shapes(self):
        from fma_client.torch import state_dict_to_numpy

        net = self.net()
        weights = state_dict_to_numpy(net.state_dict())
        assert list(weights) == list(net.state_dict())
        assert weights["1.num_batches_tracked"].shape == () and weights["1.num_batches_tracked"].dtype == np.int64
        assert weights["1.running_var"].dtype == np.float32
        weights["0.weight"] += 1  # a copy: the model is untouched
        assert float(net.state_dict()["0.weight"].sum()) != float(weights["0.weight"].sum())

    def test_numpy_to_state_dict_loads_into_the_model_with_its_dtypes_and_order(self):
        from fma_client.torch import numpy_to_state_dict, state_dict_to_numpy

        torch = _torch()
        net = self.net()
        weights = {k: v.astype(np.float64) if v.dtype == np.float32 else v
                   for k, v in state_dict_to_numpy(net.state_dict()).items()}  # fmt: skip
        weights["1.num_batches_tracked"] = np.array(7, np.int64)
        state = numpy_to_state_dict(weights, like=net.state_dict())
        assert list(state) == list(net.state_dict())
        assert state["0.weight"].dtype == torch.float32 and state["1.num_batches_tracked"].shape == ()
        net.load_state_dict(state, strict=True)
        assert int(net.state_dict()["1.num_batches_tracked"]) == 7

    def test_a_mismatch_is_named_before_anything_loads(self):
        from fma_client.torch import numpy_to_state_dict, state_dict_to_numpy

        net = self.net()
        weights = state_dict_to_numpy(net.state_dict())
        weights["0.weight"] = np.zeros((3, 3), np.float32)
        with pytest.raises(ValueError, match=r"weights\['0.weight'\] has shape \[3, 3\], the state_dict's is \[2, 3\]"):
            numpy_to_state_dict(weights, like=net.state_dict())
        del weights["0.bias"]
        with pytest.raises(ValueError, match=r"missing \['0.bias'\]"):
            numpy_to_state_dict(weights, like=net.state_dict())

    def test_a_batchnorm_model_trains_federated_with_the_helpers(self, client: Client, http):
        from fma_client.torch import numpy_to_state_dict, state_dict_to_numpy

        torch = _torch()
        net = self.net()
        server = FakeServer(http, state_dict_to_numpy(net.state_dict()), total_rounds=2)
        x = torch.randn(16, 3)

        def train_fn(weights, config):
            net.load_state_dict(numpy_to_state_dict(weights, like=net.state_dict()))
            net.train()
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            for _ in range(3):
                opt.zero_grad()
                net(x).pow(2).mean().backward()
                opt.step()
            return net.state_dict(), len(x), {}  # tensors straight from the state_dict work too

        client.run(train_fn)
        tracked = [s["tensors"]["1.num_batches_tracked"] for s in server.submitted]
        assert [(t.shape, t.dtype, int(t)) for t in tracked] == [((), np.int64, 3), ((), np.int64, 6)]


def test_fma_client_imports_without_torch_and_the_helpers_say_how_to_install_it():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import fma_client, fma_client.torch as t\n"
        "try:\n    t.state_dict_to_numpy({})\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "fma_client.torch needs PyTorch. Install it with: pip install 'fma-client[torch]'"


def test_a_flower_pytorch_client_with_batchnorm_runs_under_fedavg(client: Client, http):
    flwr_client = pytest.importorskip("flwr.client")
    pytest.importorskip("torch")
    from collections import OrderedDict

    import torch

    from fma_client.flower import FlowerRunner
    from fma_client.torch import state_dict_to_numpy

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))

    class BatchNormClient(flwr_client.NumPyClient):  # Flower's quickstart get/set_weights
        def get_parameters(self, config):
            return [v.cpu().numpy() for v in net.state_dict().values()]

        def fit(self, parameters, config):
            net.load_state_dict(OrderedDict((k, torch.tensor(v)) for k, v in zip(net.state_dict(), parameters,
                                                                                  strict=True)))  # fmt: skip
            net.train()
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            return self.get_parameters(config), len(x), {}

    server = FakeServer(http, state_dict_to_numpy(net.state_dict()), total_rounds=2)
    FlowerRunner(BatchNormClient(), client, names=list(net.state_dict()), evaluate=False).run()
    tracked = [s["tensors"]["1.num_batches_tracked"] for s in server.submitted]
    assert [(t.shape, t.dtype, int(t)) for t in tracked] == [((), np.int64, 1), ((), np.int64, 2)]


def test_a_bfloat16_model_decodes_trains_and_is_uploaded_as_bfloat16(client: Client, http):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    server = FakeServer(http, {"w": np.ones((2, 2), bf16), "n": np.array(0, np.int64)}, total_rounds=1)

    def train_fn(weights, config):
        assert weights["w"].dtype == bf16
        return {"w": weights["w"].astype(np.float32) * 1.5, "n": weights["n"] + 1}, 4, {}  # float32 back: cast

    client.run(train_fn)
    sent = server.submitted[0]["tensors"]
    assert sent["w"].dtype == bf16 and float(sent["w"][0, 0]) == 1.5 and sent["n"].shape == ()


def test_decoding_bfloat16_without_ml_dtypes_says_what_to_install():
    pytest.importorskip("ml_dtypes")
    import ml_dtypes

    data = tensors.encode({"w": np.ones(2, ml_dtypes.bfloat16)})
    code = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "from fma_client import tensors\n"
        f"try:\n    tensors.decode({data!r})\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == tensors.BF16_HINT


def test_torch_bfloat16_round_trips_bit_for_bit():
    pytest.importorskip("ml_dtypes")
    torch = pytest.importorskip("torch")
    from fma_client.torch import numpy_to_state_dict, state_dict_to_numpy

    state = {"w": torch.randn(3, 2).to(torch.bfloat16), "n": torch.tensor(5)}
    weights = state_dict_to_numpy(state)
    assert weights["w"].dtype.name == "bfloat16" and weights["n"].shape == ()
    back = numpy_to_state_dict(tensors.decode(tensors.encode(weights)), like=state)
    assert back["w"].dtype == torch.bfloat16 and torch.equal(back["w"], state["w"]) and back["n"].shape == ()
