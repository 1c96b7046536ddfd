"""Run an unchanged Flower NumPyClient (flower_client.py) through FMA with `run_flower_client`.

Where Flower would start a server with `FedAvg(min_fit_clients=N)` and
`ServerConfig(num_rounds=R)`, FMA creates an experiment with `strategy="fedavg"` and
`rounds={"min_updates": N, "total_rounds": R}`; each client then pulls the model, fits,
submits and evaluates on its own. Run: python examples/flower_sklearn/run.py [--quick]
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from _connect import fma, parser  # noqa: E402
from flower_client import client_fn  # noqa: E402

from fma_client import Developer  # noqa: E402
from fma_client.flower import initial_weights, run_flower_client  # noqa: E402

NAMES = ["coef", "intercept"]  # Flower's list [coef_, intercept_] <-> FMA's named tensors


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    num_clients, rounds = (3, 2) if args.quick else (5, 10)
    clients = [client_fn(i, num_clients) for i in range(num_clients)]
    with fma(args) as (url, token):
        dev = Developer(url, token)
        exp = dev.create_experiment(
            "flower-sklearn", initial_weights(clients[0], NAMES), strategy="fedavg",
            rounds={"min_updates": num_clients, "total_rounds": rounds},
        )  # fmt: skip
        enroll = dev.enrollment_token(exp["id"], max_uses=num_clients)["token"]
        with ThreadPoolExecutor(num_clients) as pool:  # in production: one process per data owner
            jobs = [pool.submit(run_flower_client, url, exp["id"], c, enrollment_token=enroll) for c in clients]
            histories = [job.result() for job in jobs]
        for r in dev.rounds(exp["id"]):
            m = r["evaluation_metrics"]
            print(f"round {r['round']}: {r['accepted']} updates; federated evaluation of its model on "
                  f"{r['evaluations']} clients: loss {m['loss']:.3f}, accuracy {m['accuracy']:.3f}")  # fmt: skip
    first = sum(h.metrics["accuracy"][0][1] for h in histories) / num_clients
    last = sum(h.metrics["accuracy"][-1][1] for h in histories) / num_clients
    print(f"mean client accuracy: initial model {first:.3f} -> final model {last:.3f}")
    return 0 if last > first else 1


if __name__ == "__main__":
    raise SystemExit(main())
