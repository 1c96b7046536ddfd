"""One demo client process: its own non-IID shard of digits, trained with the FMA SDK."""

from __future__ import annotations

import argparse
import logging

from fma.local.digits import load_split, train


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--enrollment-token", required=True)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"client {args.index}: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)
    from fma_client import Client

    split = load_split(args.clients, args.seed)
    idx = split.client_indices[args.index]
    x, y = split.x_train[idx], split.y_train[idx]

    def train_fn(weights, config):
        new, loss = train(weights, x, y, epochs=int(config["epochs"]), lr=float(config["lr"]),
                          seed=args.seed * 1000 + args.index * 100 + int(config["round"]))
        return new, len(y), {"loss": loss, "train_accuracy": float((
            (x @ new["softmax/kernel"] + new["softmax/bias"]).argmax(axis=1) == y).mean())}

    # A demo's clients live as long as its experiment: nothing is left in the user's config folder.
    client = Client(args.url, args.experiment, enrollment_token=args.enrollment_token, name=f"demo-{args.index}",
                    persist_registration=False)
    client.run(train_fn)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
