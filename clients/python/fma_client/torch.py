"""PyTorch `state_dict` <-> FMA weights (named numpy arrays), keeping what a model needs.

    from fma_client.torch import numpy_to_state_dict, state_dict_to_numpy

    def train(weights, config):
        net.load_state_dict(numpy_to_state_dict(weights, like=net.state_dict()))
        ...  # your training loop
        return state_dict_to_numpy(net.state_dict()), len(dataset), {"loss": loss}

Everything in the `state_dict` travels: parameters and buffers (a BatchNorm's `running_mean`,
`running_var` and its 0-d int64 `num_batches_tracked`), each with its own dtype and exact
shape, 0-d included. Integer buffers are aggregated by the server's documented rule for
integer tensors. PyTorch is imported when a function is called, so `fma_client` works without
it; install it with `pip install 'fma-client[torch]'`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from fma_client.tensors import Weights

INSTALL_HINT = "fma_client.torch needs PyTorch. Install it with: pip install 'fma-client[torch]'"

__all__ = ["INSTALL_HINT", "numpy_to_state_dict", "state_dict_to_numpy"]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return torch


def state_dict_to_numpy(state_dict: Mapping[str, Any]) -> Weights:
    """`{name: np.ndarray}` from a `state_dict` (or any mapping of tensors), on the CPU.

    Each array is a copy: training on after the call cannot change what is uploaded. Shapes
    and dtypes are kept exactly (a 0-d tensor stays 0-d). bfloat16, which numpy lacks, becomes
    ml_dtypes' `bfloat16` (`fma-client[bf16]`), the dtype FMA's server uses for BF16.
    """
    torch = _torch()
    out: Weights = {}
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{name!r}] is a {type(value).__name__}, not a torch.Tensor")
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:  # same bits, viewed as ml_dtypes.bfloat16
            out[name] = tensor.view(torch.int16).numpy().view(_bfloat16(name)).copy()
        else:
            out[name] = tensor.numpy().copy()
    return out


def _bfloat16(name: str) -> Any:
    try:
        import ml_dtypes
    except ImportError as exc:
        raise TypeError(f"state_dict[{name!r}] is bfloat16; numpy holds it with ml_dtypes: "
                        "pip install 'fma-client[bf16]' (or convert the model with .float())") from exc  # fmt: skip
    return ml_dtypes.bfloat16


def numpy_to_state_dict(
    weights: Mapping[str, Any], like: Mapping[str, Any] | None = None, device: Any = None
) -> OrderedDict[str, Any]:
    """A `state_dict` (OrderedDict of tensors) for `load_state_dict` from FMA weights.

    With `like` (the model's own `state_dict()`), the result has its key order, dtypes and
    device, and every name and shape is checked first (ValueError names the mismatch), so a
    wrong model never loads silently. Without it, dtypes are numpy's and keys are sorted.
    """
    torch = _torch()
    if like is None:
        return OrderedDict((name, _tensor(torch, weights[name], None, device)) for name in sorted(weights))
    missing, unknown = sorted(set(like) - set(weights)), sorted(set(weights) - set(like))
    if missing or unknown:
        raise ValueError(f"weights do not match the state_dict: missing {missing}, unknown {unknown}")
    out: OrderedDict[str, Any] = OrderedDict()
    for name, ref in like.items():
        arr = np.asarray(weights[name])
        if tuple(arr.shape) != tuple(ref.shape):
            raise ValueError(f"weights[{name!r}] has shape {list(arr.shape)}, the state_dict's is {list(ref.shape)}")
        out[name] = _tensor(torch, arr, ref.dtype, device if device is not None else ref.device)
    return out


def _tensor(torch: Any, value: Any, dtype: Any, device: Any) -> Any:
    arr = np.array(value, copy=True)  # writable and owned: torch.from_numpy shares memory
    if arr.dtype.name == "bfloat16":  # ml_dtypes' bfloat16: same bits as torch.bfloat16
        tensor = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(arr)
    if dtype is not None and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor if device is None else tensor.to(device)
