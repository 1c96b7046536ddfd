"""The demo's task: softmax regression on scikit-learn's bundled digits (no download),
split across clients with a Dirichlet prior over labels (non-IID, as real clients are)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_CLASSES = 10
NUM_FEATURES = 64


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    client_indices: list[np.ndarray]


def load_split(num_clients: int, seed: int = 0, alpha: float = 0.5) -> Split:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    train, test = order[:cut], order[cut:]
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    y_train = y[train]
    for label in range(NUM_CLASSES):
        idx = np.flatnonzero(y_train == label)
        rng.shuffle(idx)
        shares = rng.dirichlet(alpha * np.ones(num_clients))
        bounds = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
        for client, chunk in enumerate(np.split(idx, bounds)):
            parts[client].extend(chunk.tolist())
    return Split(x[train], y_train, x[test], y[test],
                 [np.array(sorted(p), dtype=int) for p in parts])


def initial_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"softmax/kernel": (0.01 * rng.normal(size=(NUM_FEATURES, NUM_CLASSES))).astype(np.float32),
            "softmax/bias": np.zeros(NUM_CLASSES, dtype=np.float32)}


def train(weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float,
          batch_size: int = 32, seed: int = 0) -> tuple[dict[str, np.ndarray], float]:
    """Minibatch SGD on the cross-entropy; returns new weights and the last epoch's mean loss."""
    w = weights["softmax/kernel"].astype(np.float64).copy()
    b = weights["softmax/bias"].astype(np.float64).copy()
    rng = np.random.default_rng(seed)
    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        losses = []
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            probs = softmax(x[idx] @ w + b)
            losses.append(-np.log(probs[np.arange(len(idx)), y[idx]] + 1e-12).mean())
            probs[np.arange(len(idx)), y[idx]] -= 1.0
            w -= lr * x[idx].T @ probs / len(idx)
            b -= lr * probs.mean(axis=0)
        loss = float(np.mean(losses)) if losses else 0.0
    return {"softmax/kernel": w.astype(np.float32), "softmax/bias": b.astype(np.float32)}, loss


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    logits = x @ weights["softmax/kernel"] + weights["softmax/bias"]
    return float((logits.argmax(axis=1) == y).mean())
