"""A PyTorch Flower client (as in Flower's PyTorch quickstart) trained through FMA.

A small MLP on scikit-learn's 8x8 digits, MNIST-like and downloaded from nowhere. The Flower
client lists its arrays in `state_dict` order (`fc1.weight` before `fc1.bias`), not in FMA's
name order, so the adapter is given `names=list(net.state_dict())`. Skips cleanly (exit 0)
when torch is not installed. Run: python examples/pytorch_mnist_like/run.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import torch
except ImportError:
    print("torch is not installed: skipping the PyTorch example (pip install torch to run it)")
    raise SystemExit(0) from None

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from flwr.client import NumPyClient
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _connect import fma, parser

from fma_client import Developer
from fma_client.flower import initial_weights, run_flower_client

# -- the Flower client: what you already have ------------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def get_weights(net: nn.Module) -> list[np.ndarray]:
    return [val.cpu().numpy() for _, val in net.state_dict().items()]


def set_weights(net: nn.Module, parameters: list[np.ndarray]) -> None:
    params_dict = zip(net.state_dict().keys(), parameters, strict=True)
    net.load_state_dict(OrderedDict({k: torch.tensor(v) for k, v in params_dict}), strict=True)


def load_data(partition_id: int, num_partitions: int) -> tuple[DataLoader, DataLoader]:
    x, y = load_digits(return_X_y=True)
    part = np.array_split(np.random.default_rng(42).permutation(len(y)), num_partitions)[partition_id]
    data = TensorDataset(torch.tensor(x[part] / 16.0, dtype=torch.float32), torch.tensor(y[part]))
    cut = int(0.8 * len(data))
    train, test = torch.utils.data.random_split(data, [cut, len(data) - cut], torch.Generator().manual_seed(0))
    return DataLoader(train, batch_size=32, shuffle=True), DataLoader(test, batch_size=64)


def train(net: nn.Module, loader: DataLoader, epochs: int, lr: float) -> float:
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    total = 0.0
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
    return total / max(1, epochs * len(loader))


def test(net: nn.Module, loader: DataLoader) -> tuple[float, float]:
    net.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            out = net(x)
            loss += nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
    return loss / len(loader.dataset), correct / len(loader.dataset)


class TorchClient(NumPyClient):
    def __init__(self, net: nn.Module, trainloader: DataLoader, testloader: DataLoader) -> None:
        self.net, self.trainloader, self.testloader = net, trainloader, testloader

    def get_parameters(self, config):
        return get_weights(self.net)

    def fit(self, parameters, config):
        set_weights(self.net, parameters)
        train_loss = train(self.net, self.trainloader, int(config["local-epochs"]), float(config["lr"]))
        return get_weights(self.net), len(self.trainloader.dataset), {"train_loss": train_loss}

    def evaluate(self, parameters, config):
        set_weights(self.net, parameters)
        loss, accuracy = test(self.net, self.testloader)
        return loss, len(self.testloader.dataset), {"accuracy": accuracy}


# -- FMA -------------------------------------------------------------------------------------


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    num_clients, rounds = (3, 2) if args.quick else (5, 10)
    torch.manual_seed(0)
    clients = [TorchClient(Net(), *load_data(i, num_clients)) for i in range(num_clients)]
    names = list(Net().state_dict())  # Flower's list order; FMA would otherwise sort by name
    with fma(args) as (url, token):
        dev = Developer(url, token)
        exp = dev.create_experiment(
            "flower-pytorch", initial_weights(clients[0], names), strategy="fedavg",
            rounds={"min_updates": num_clients, "total_rounds": rounds},
            client_config={"local-epochs": 3 if args.quick else 2, "lr": 0.1},
        )  # fmt: skip
        enroll = dev.enrollment_token(exp["id"], max_uses=num_clients)["token"]
        with ThreadPoolExecutor(num_clients) as pool:
            jobs = [pool.submit(run_flower_client, url, exp["id"], c, enrollment_token=enroll, names=names)
                    for c in clients]  # fmt: skip
            [job.result() for job in jobs]
        accuracy = {r["round"]: r["evaluation_metrics"]["accuracy"] for r in dev.rounds(exp["id"])}
    for n, acc in sorted(accuracy.items()):
        print(f"round {n}: federated evaluation accuracy {acc:.3f}")
    return 0 if accuracy[rounds] > 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
