"""The `fma` command: local mode, the demo, and admin tokens for a deployed table."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import threading
from pathlib import Path


def port_busy_message(host: str, port: int, command: str) -> str | None:
    """One line saying the port is taken (None if it is free), checked before anything starts.

    Why before: starting local mode first would leave its emulation running behind a
    traceback from the socket layer, which tells a user nothing they can act on.
    """
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the gateway binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return f"{command}: cannot listen on {host}:{port}: {exc.strerror}"
            return (f"{command}: port {port} on {host} is already in use (another `fma local up`?); "
                    f"stop that process or choose another port with --port")
    return None


def _local_up(args: argparse.Namespace) -> int:
    from fma.local.app import LocalStack

    if busy := port_busy_message(args.host, args.port, "fma local up"):
        print(busy, file=sys.stderr)
        return 1
    stack = LocalStack(host=args.host, port=args.port, state_dir=Path(args.state_dir), ephemeral=args.ephemeral,
                       backend=args.backend, workers=args.workers).start()
    print(f"FMA local mode is up\n  API:       {stack.url}/v1\n  Dashboard: {stack.url}/\n"
          f"  Admin token: {stack.admin_token}\n  (also written to {Path(args.state_dir) / 'admin-token'})\n"
          f"  Backend: {stack.description}\n"
          f"  Workers: {_workers_line(args.workers)}\n"
          "Press Ctrl-C to stop.", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("FMA local mode stopped.", flush=True)
    return 0


def _workers_line(workers: int) -> str:
    if workers <= 0:
        return "none (every handler runs in this process)"
    return f"{workers} API/authorizer processes; ingest and aggregation in one process each"


def _token_create(args: argparse.Namespace) -> int:
    """Mint a token straight into a deployed table (uses your AWS credentials)."""
    from fma.adapters.repository import DynamoRepository
    from fma.domain.auth import Role
    from fma.services.access import mint_token
    from fma.services.deps import TokenDeps

    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    deps = TokenDeps(repo=DynamoRepository(args.table, region, args.endpoint_url))
    token, rec = mint_token(deps, Role(args.role), name=args.name)
    print(token)
    print(f"role={rec.role} principal_id={rec.principal_id} (store it now: it is not shown again)", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fma.local.demo import run_demo

    if busy := port_busy_message("127.0.0.1", args.port, "fma demo"):
        print(busy, file=sys.stderr)
        return 1
    if args.async_mode:  # issue 15: sync quota 6 vs quota 4 vs async K=3 with stragglers
        from fma.local.async_compare import compare

        return compare(args)
    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fma", description="Serverless federated model aggregation")
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="run FMA on this machine").add_subparsers(dest="local_command", required=True)
    up = local.add_parser("up", help="start the gateway, the ingest pump, the aggregate worker and the sweeper")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--state-dir", default=".fma", help="where the admin token and the recorded state live")
    up.add_argument("--ephemeral", action="store_true", help="do not keep state")
    up.add_argument("--backend", default="sqlite_fs", choices=["sqlite_fs", "aws-emulation"],
                    help="sqlite_fs (default: SQLite + files in the state dir) or aws-emulation (moto)")
    up.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="worker processes for the API and authorizer handlers (default: the core count; "
                         "0 runs every handler in this process)")
    up.set_defaults(fn=_local_up)
    token = sub.add_parser("token", help="admin tokens").add_subparsers(dest="token_command", required=True)
    create = token.add_parser("create", help="mint a token into a deployed table")
    create.add_argument("--role", required=True, choices=["admin", "developer", "analyst"])
    create.add_argument("--table", required=True)
    create.add_argument("--region")
    create.add_argument("--name")
    create.add_argument("--endpoint-url", help=argparse.SUPPRESS)
    create.set_defaults(fn=_token_create)
    demo = sub.add_parser("demo", help="federated training of digits with 6 local clients")
    demo.add_argument("--rounds", type=int, default=5)
    demo.add_argument("--clients", type=int, default=6)
    demo.add_argument("--quota", type=int, default=4)
    demo.add_argument("--quick", action="store_true", help="fewer local epochs (CI)")
    demo.add_argument("--async", dest="async_mode", action="store_true",
                      help="compare sync (quota 6, quota 4) with async FedBuff (K=3), 2 of 6 clients 5x slower; "
                           "--rounds is sync quota 6's rounds (docs/async.md)")
    demo.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--state-dir", default=".fma")
    demo.add_argument("--backend", default="sqlite_fs", choices=["sqlite_fs", "aws-emulation"])
    demo.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="worker processes for the API handlers (0: all in the demo's process)")
    demo.set_defaults(fn=_demo)
    from fma.history_cli import add_commands

    add_commands(sub)  # fma verify, fma export mlflow
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
