"""`fma verify` and `fma export mlflow`: the history commands (registered by fma.cli)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fma.verify_sources import HttpSource, Source, StoreSource, VerifyError, local_source


def add_commands(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser("verify", help="check an experiment's hash chain, objects and registry versions")
    verify.add_argument("experiment_id")
    which = verify.add_mutually_exclusive_group()
    which.add_argument("--rerun", type=int, action="append", metavar="N", help="re-run round N's aggregation")
    which.add_argument("--rerun-all", action="store_true", help="re-run every published round")
    _source_args(verify)
    verify.set_defaults(fn=_verify)
    export = sub.add_parser("export", help="export an experiment").add_subparsers(dest="export_to", required=True)
    mlflow = export.add_parser("mlflow", help="log the experiment as an MLflow run (needs the mlflow extra)")
    mlflow.add_argument("experiment_id")
    mlflow.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or ./mlruns)")
    mlflow.add_argument("--registered-model", metavar="NAME",
                        help="also log registry versions as versions of this MLflow registered model")
    _source_args(mlflow)
    mlflow.set_defaults(fn=_export_mlflow)


def _source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="FMA API base URL (with --token)")
    parser.add_argument("--token", help="developer or admin token (default: FMA_TOKEN)")
    parser.add_argument("--bucket", help="read the bucket directly (with --table)")
    parser.add_argument("--table", help="read the table directly (with --bucket)")
    parser.add_argument("--state-dir", help="read a local-mode state directory directly (its state, DP key)")
    parser.add_argument("--region")
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)


def source_from_args(args: argparse.Namespace) -> Source:
    """--url/--token, --state-dir (local mode), or --bucket/--table (with your AWS credentials)."""
    if args.state_dir:
        return local_source(Path(args.state_dir), args.experiment_id)
    if args.url:
        token = args.token or os.environ.get("FMA_TOKEN")
        if not token:
            raise VerifyError("--url needs --token (or FMA_TOKEN)")
        return HttpSource(args.url, token, args.experiment_id)
    if not (args.bucket and args.table):
        raise VerifyError("give --url and --token, --state-dir, or --bucket and --table")
    from fma.adapters.repository import DynamoRepository
    from fma.adapters.s3_store import S3ObjectStore
    from fma.services.deps import Deps

    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    repo = DynamoRepository(args.table, region, args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"))
    store = S3ObjectStore(args.bucket, endpoint_url=args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3"),
                          region=region)
    return StoreSource(Deps(repo=repo, store=store), args.experiment_id)


def _verify(args: argparse.Namespace) -> int:
    from fma.verify import verify

    try:
        report = verify(source_from_args(args), args.experiment_id, set(args.rerun or ()), args.rerun_all)
    except VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.render())
    return 1 if report.problems else 0


def _export_mlflow(args: argparse.Namespace) -> int:
    try:
        from fma.export_mlflow import export_experiment
    except ImportError as exc:
        print(f"error: {exc}; install the extra: pip install 'fma[mlflow]'", file=sys.stderr)
        return 2
    try:
        run_id = export_experiment(source_from_args(args), args.experiment_id, args.tracking_uri,
                                   args.registered_model)
    except VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {args.experiment_id} to MLflow run {run_id}")
    return 0
