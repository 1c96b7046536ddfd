"""Federated softmax regression on scikit-learn's digits, in plain numpy, with the FMA SDK.

The developer creates a FedAvg experiment from an initial model; each client trains on its
own non-IID shard (a Dirichlet prior over labels) and submits its weights; FMA averages them
by num_examples. Run: python examples/digits_numpy/train.py [--quick] [--url U --admin-token T]
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _connect import fma, parser

from fma_client import Client, Developer

# -- the task: data, model, training. This is the code you already have. --------------------


def load_shards(num_clients: int, seed: int = 0, alpha: float = 0.5):
    """Train/test split of digits; the train part dealt to clients with non-IID label shares."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    train, test = order[: int(0.8 * len(y))], order[int(0.8 * len(y)) :]
    shards: list[list[int]] = [[] for _ in range(num_clients)]
    for label in range(10):
        idx = train[y[train] == label]
        shares = rng.dirichlet(alpha * np.ones(num_clients))
        for client, chunk in enumerate(np.split(idx, (np.cumsum(shares)[:-1] * len(idx)).astype(int))):
            shards[client].extend(chunk)
    return [(x[s], y[s]) for s in shards], (x[test], y[test])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sgd(weights: dict, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, seed: int) -> tuple[dict, float]:
    """Minibatch SGD on the cross-entropy; returns new weights and the last epoch's loss."""
    w, b = weights["softmax/kernel"].copy(), weights["softmax/bias"].copy()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        losses = []
        for batch in np.array_split(rng.permutation(len(y)), max(1, len(y) // 32)):
            p = softmax(x[batch] @ w + b)
            losses.append(-np.log(p[np.arange(len(batch)), y[batch]] + 1e-12).mean())
            p[np.arange(len(batch)), y[batch]] -= 1.0
            w -= lr * x[batch].T @ p / len(batch)
            b -= lr * p.mean(axis=0)
    return {"softmax/kernel": w, "softmax/bias": b}, float(np.mean(losses))


def accuracy(weights: dict, x: np.ndarray, y: np.ndarray) -> float:
    return float(((x @ weights["softmax/kernel"] + weights["softmax/bias"]).argmax(axis=1) == y).mean())


# -- federated: what FMA adds ------------------------------------------------------------------


def client_process(url: str, experiment_id: str, enrollment_token: str, index: int, shard) -> list[dict]:
    """One client. In production this runs on the data owner's machine, not in a thread."""
    x, y = shard

    def train_fn(weights, config):  # global model in, local model out
        new, loss = sgd(weights, x, y, int(config["epochs"]), float(config["lr"]), seed=100 * index + config["round"])
        return new, len(y), {"loss": loss, "train_accuracy": accuracy(new, x, y)}

    client = Client(url, experiment_id, enrollment_token=enrollment_token, name=f"digits-{index}")
    return client.run(train_fn)


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    num_clients, rounds, epochs = (3, 2, 2) if args.quick else (5, 8, 5)
    shards, (x_test, y_test) = load_shards(num_clients)
    print(f"{num_clients} clients with {[len(s[1]) for s in shards]} examples, {rounds} rounds", flush=True)
    initial = {"softmax/kernel": np.zeros((64, 10), np.float32), "softmax/bias": np.zeros(10, np.float32)}
    with fma(args) as (url, token):
        dev = Developer(url, token)
        exp = dev.create_experiment(
            "digits-numpy", initial, strategy="fedavg",
            rounds={"min_updates": num_clients, "total_rounds": rounds},
            client_config={"epochs": epochs, "lr": 0.5},
        )  # fmt: skip
        enroll = dev.enrollment_token(exp["id"], max_uses=num_clients)["token"]
        with ThreadPoolExecutor(num_clients) as pool:
            jobs = [pool.submit(client_process, url, exp["id"], enroll, i, s) for i, s in enumerate(shards)]
            [job.result() for job in jobs]
        models = [initial] + [dev.download_model(exp["id"], n) for n in range(1, rounds + 1)]
        accs = [accuracy(model, x_test, y_test) for model in models]
        for r in dev.rounds(exp["id"]):
            print(f"round {r['round']}: {r['accepted']} updates, mean client loss {r['metrics']['loss']:.3f}, "
                  f"global test accuracy {accs[r['round']]:.3f}", flush=True)  # fmt: skip
    print(f"test accuracy: initial {accs[0]:.3f} -> final {accs[-1]:.3f}")
    return 0 if accs[-1] > accs[0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
