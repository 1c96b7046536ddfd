"""Builders shared by the aggregation tests: updates as safetensors bytes behind fetch
functions that count what they read, and the same inputs as Flower's FitRes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from fma.domain.aggregation import UpdateInput
from fma.domain.codec import encode


class Reads:
    """Counts bytes and requests, as an S3 bill would."""

    def __init__(self) -> None:
        self.bytes = 0
        self.requests = 0


def make_update(
    client_id: str,
    tensors: Mapping[str, np.ndarray],
    num_examples: int = 1,
    metrics: Mapping[str, float] | None = None,
    reads: Reads | None = None,
) -> UpdateInput:
    meta = {"fma.num_examples": str(num_examples), "fma.metrics": json.dumps(dict(metrics or {}))}
    data = encode(tensors, meta)
    reads = reads or Reads()

    def fetch() -> bytes:
        reads.bytes += len(data)
        reads.requests += 1
        return data

    def fetch_range(a: int, b: int) -> bytes:
        assert 0 <= a <= b <= len(data), (a, b, len(data))
        reads.bytes += b - a
        reads.requests += 1
        return data[a:b]

    return UpdateInput(client_id, num_examples, "0" * 64, len(data), fetch, fetch_range, dict(metrics or {}))


def random_model(rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]], dtype=np.float32,
                 scale: float = 1.0) -> dict[str, np.ndarray]:
    return {name: (rng.standard_normal(shape) * scale).astype(dtype) for name, shape in shapes.items()}


SHAPES = {"dense/kernel": (13, 7), "dense/bias": (7,), "conv/w": (3, 3, 2, 4), "out/b": (1,)}


def random_round(seed: int, k: int, shapes: Mapping[str, tuple[int, ...]] = SHAPES, spread: float = 0.1):
    """A global model and k client models near it, with random num_examples."""
    rng = np.random.default_rng(seed)
    g = random_model(rng, shapes)
    clients = []
    for _ in range(k):
        noise = random_model(rng, shapes, scale=spread)
        clients.append(({n: (g[n] + noise[n]).astype(np.float32) for n in g}, int(rng.integers(1, 100))))
    return g, clients


def as_updates(clients: Sequence[tuple[Mapping[str, np.ndarray], int]], reads: Reads | None = None,
               metrics: Sequence[Mapping[str, float]] | None = None) -> list[UpdateInput]:
    return [
        make_update(f"c{i:03d}", t, n, (metrics[i] if metrics else None), reads)
        for i, (t, n) in enumerate(clients)
    ]


def as_ndarrays(model: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Flower's list of arrays, in name order (ModelSpec's order)."""
    return [np.array(model[n]) for n in sorted(model)]


def from_ndarrays(arrays: Sequence[np.ndarray], like: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {n: np.asarray(a).reshape(like[n].shape) for n, a in zip(sorted(like), arrays, strict=True)}


def fit_results(clients: Sequence[tuple[Mapping[str, np.ndarray], int]]):
    """The same clients as Flower's [(ClientProxy, FitRes)]."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    return [
        (None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(as_ndarrays(t)), n, {}))
        for t, n in clients
    ]


def rel_err(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """Norm-wise relative error over the whole model."""
    num = sum(float(np.sum((np.float64(a[n]) - np.float64(b[n])) ** 2)) for n in b)
    den = sum(float(np.sum(np.float64(b[n]) ** 2)) for n in b)
    return float(np.sqrt(num / max(den, 1e-300)))
