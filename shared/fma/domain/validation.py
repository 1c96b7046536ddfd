"""Checks every update against the experiment's model spec before it may reach a model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from fma.domain.codec import tensor_view
from fma.domain.errors import UpdateRejected
from fma.domain.model_spec import ModelSpec
from fma.domain.safetensors_header import FLOAT_DTYPES, HeaderLimits, parse_header
from fma.domain.update_meta import UpdateMeta, parse_update_meta


@dataclass(frozen=True)
class UpdateLimits:
    max_update_bytes: int
    max_update_norm: float | None = None
    header: HeaderLimits = field(default_factory=HeaderLimits)


@dataclass(frozen=True)
class ValidUpdate:
    meta: UpdateMeta
    size: int


def validate_update(
    buf: bytes | memoryview,
    spec: ModelSpec,
    limits: UpdateLimits,
    *,
    expected_round: int | None = None,
    global_model: Mapping[str, np.ndarray] | None = None,
) -> ValidUpdate:
    """Raise UpdateRejected with a client-readable reason, or return the update's facts."""
    if len(buf) > limits.max_update_bytes:
        raise UpdateRejected("TOO_LARGE", f"{len(buf)} bytes exceed max_update_bytes={limits.max_update_bytes}")
    header = parse_header(buf, total_size=len(buf), limits=limits.header)
    meta = parse_update_meta(header.metadata)
    if expected_round is not None and meta.round is not None and meta.round != expected_round:
        raise UpdateRejected("WRONG_ROUND", f"file says round {meta.round}, uploaded for round {expected_round}")
    spec.check(header)
    squared = 0.0
    for info in header.tensors:
        view = tensor_view(buf, header, info)
        if info.dtype in FLOAT_DTYPES and not np.isfinite(view).all():
            raise UpdateRejected("NON_FINITE", f"{info.name} holds NaN or Inf")
        if limits.max_update_norm is not None and global_model is not None:
            delta = view.astype(np.float64) - global_model[info.name]
            squared += float(np.dot(delta.ravel(), delta.ravel()))
    if limits.max_update_norm is not None and global_model is not None:
        norm = squared**0.5
        if norm > limits.max_update_norm:
            raise UpdateRejected(
                "NORM_TOO_LARGE", f"update norm {norm:.4g} exceeds max_update_norm={limits.max_update_norm}"
            )
    return ValidUpdate(meta, len(buf))
