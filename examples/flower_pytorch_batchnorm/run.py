"""A Flower PyTorch client whose model has BatchNorm, trained through FMA with FedAvg.

BatchNorm brings buffers to the `state_dict`: `running_mean`, `running_var` (float32) and
`num_batches_tracked`, a 0-d int64 tensor. Flower's quickstart `get_weights` hands them all
over as numpy arrays, the 0-d one included; FMA keeps each with its shape and dtype, and
aggregates the integer buffer by its documented rule. The developer side uses
`fma_client.torch` to build the initial model from the `state_dict` and to load the final
one back into a network. Run: python examples/flower_pytorch_batchnorm/run.py [--quick]
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from flwr.client import NumPyClient
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _connect import fma, parser

from fma_client import Developer
from fma_client.flower import run_flower_client
from fma_client.torch import numpy_to_state_dict, state_dict_to_numpy

# -- the Flower client: what you already have ------------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn1(self.fc1(x))))


def get_weights(net: nn.Module) -> list[np.ndarray]:
    return [val.cpu().numpy() for _, val in net.state_dict().items()]


def set_weights(net: nn.Module, parameters: list[np.ndarray]) -> None:
    params_dict = zip(net.state_dict().keys(), parameters, strict=True)
    net.load_state_dict(OrderedDict({k: torch.tensor(v) for k, v in params_dict}), strict=True)


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)


def load_data(partition_id: int, num_partitions: int) -> tuple[DataLoader, DataLoader]:
    x, y = digits()
    part = np.array_split(np.random.default_rng(7).permutation(len(y)), num_partitions)[partition_id]
    data = TensorDataset(x[part], y[part])
    cut = int(0.8 * len(data))
    train, test = torch.utils.data.random_split(data, [cut, len(data) - cut], torch.Generator().manual_seed(0))
    return DataLoader(train, batch_size=32, shuffle=True, drop_last=True), DataLoader(test, batch_size=64)


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
    torch.set_num_threads(1)  # several clients share this machine's cores
    clients = [TorchClient(Net(), *load_data(i, num_clients)) for i in range(num_clients)]
    reference = Net()
    names = list(reference.state_dict())  # Flower's list order: the state_dict's, buffers included
    with fma(args) as (url, token):
        dev = Developer(url, token)
        exp = dev.create_experiment(
            "flower-pytorch-batchnorm", state_dict_to_numpy(clients[0].net.state_dict()), strategy="fedavg",
            rounds={"min_updates": num_clients, "total_rounds": rounds},
            client_config={"local-epochs": 2, "lr": 0.05},
        )  # fmt: skip
        enroll = dev.enrollment_token(exp["id"], max_uses=num_clients)["token"]
        with ThreadPoolExecutor(num_clients) as pool:
            jobs = [pool.submit(run_flower_client, url, exp["id"], c, enrollment_token=enroll, names=names)
                    for c in clients]  # fmt: skip
            [job.result() for job in jobs]
        accuracy = {r["round"]: r["evaluation_metrics"]["accuracy"] for r in dev.rounds(exp["id"])}
        final = dev.download_model(exp["id"], rounds)
    reference.load_state_dict(numpy_to_state_dict(final, like=reference.state_dict()))
    for n, acc in sorted(accuracy.items()):
        print(f"round {n}: federated evaluation accuracy {acc:.3f}")
    tracked = final["bn1.num_batches_tracked"]
    print(f"final model: bn1.num_batches_tracked = {int(tracked)} (shape {list(tracked.shape)}, {tracked.dtype})")
    x, y = digits()
    with torch.no_grad():
        reference.eval()
        central = (reference(x).argmax(1) == y).float().mean().item()
    print(f"final model loaded with numpy_to_state_dict: accuracy on all digits {central:.3f}")
    return 0 if accuracy[rounds] > 0.5 and tracked.shape == () else 1


if __name__ == "__main__":
    raise SystemExit(main())
