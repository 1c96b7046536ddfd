"""The model spec: what every update of an experiment must look like (names, dtypes, shapes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fma.domain.errors import UpdateRejected
from fma.domain.safetensors_header import DTYPE_SIZES, SafetensorsHeader


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_SIZES[self.dtype]


@dataclass(frozen=True)
class ModelSpec:
    """Tensors in name order: the order Flower's list of arrays maps to, and the sharding order."""

    tensors: tuple[TensorSpec, ...]

    @classmethod
    def from_header(cls, header: SafetensorsHeader) -> ModelSpec:
        return cls(tuple(sorted((TensorSpec(t.name, t.dtype, t.shape) for t in header.tensors),
                                key=lambda t: t.name)))

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> ModelSpec:
        return cls(tuple(TensorSpec(d["name"], d["dtype"], tuple(d["shape"])) for d in data))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in self.tensors]

    @property
    def num_parameters(self) -> int:
        return sum(math.prod(t.shape) for t in self.tensors)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def check(self, header: SafetensorsHeader) -> None:
        """Raise UpdateRejected naming the first tensor that differs from the spec."""
        got = header.by_name()
        expected = {t.name for t in self.tensors}
        missing = sorted(expected - got.keys())
        extra = sorted(got.keys() - expected)
        if missing or extra:
            raise UpdateRejected(
                "WRONG_TENSORS", f"tensor names differ from the model: missing {missing[:5]}, unexpected {extra[:5]}"
            )
        for spec in self.tensors:
            info = got[spec.name]
            if info.dtype != spec.dtype:
                raise UpdateRejected("WRONG_DTYPE", f"{spec.name}: dtype {info.dtype}, expected {spec.dtype}")
            if info.shape != spec.shape:
                raise UpdateRejected(
                    "WRONG_SHAPE", f"{spec.name}: shape {list(info.shape)}, expected {list(spec.shape)}"
                )
