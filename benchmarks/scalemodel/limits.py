"""AWS's documented limits, FMA's configured ones, and list prices the simulation uses.

AWS (documentation as of 2025): DynamoDB serves at most 1,000 write units and 3,000 read units per
second per partition key (a key never splits), transactional requests cost two units per item;
S3 serves 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second per prefix; Lambda's
default account concurrency is 1,000; API Gateway's default account throttle is 10,000 requests
per second with a burst of 5,000 per region. FMA's stage throttle, ingest's queue settings and
retry constants are read from the code of the design (the profile's `config`, recorded from
infra/config.py and the retry constants at that commit).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

#: us-east-1 list prices in USD (AWS pricing pages as of 2025; check before budgeting).
PRICES = {
    "api_request": 3.50 / 1e6,           # API Gateway REST, first 333 M requests a month
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second": 0.0000166667,    # x86
    "ddb_write_unit": 0.625 / 1e6,       # on-demand write request unit (prices of Nov 2024)
    "ddb_read_unit": 0.125 / 1e6,        # on-demand read request unit
    "s3_put": 0.005 / 1000,              # PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1000,             # GET, HEAD
    "sqs_request": 0.40 / 1e6,           # standard queue: send, receive, delete, change visibility
    "cloudfront_request": 1.00 / 1e6,    # HTTPS requests, North America (the pointer-polls what-if)
}


@dataclass(frozen=True)
class Limits:
    wcu_per_key: float = 1000.0
    rcu_per_key: float = 3000.0
    txn_window: float = 0.02             # seconds a transaction holds its items (the conflict window)
    s3_put_per_prefix: float = 3500.0
    s3_get_per_prefix: float = 5500.0
    lambda_account: int = 1000
    api_account_rate: float = 10_000.0
    api_account_burst: float = 5_000.0
    api_stage_rate: float = 1_500.0
    api_stage_burst: float = 3_000.0
    ingest_max_concurrency: int | None = None
    ingest_batch_size: int = 10
    visibility_seconds: float = 720.0
    max_receive_count: int = 5
    max_ingest_attempts: int = 4
    ingest_retry_base: float = 2.0
    ingest_retry_cap: float = 300.0
    transact_attempts: int = 8          # a conflicted transaction's tries and their sleeps (Backoff)
    transact_base: float = 0.02
    transact_cap: float = float("inf")
    transact_low: float = 0.0
    single_write_attempts: int = 1      # a single write that meets a transaction: retried after item 2
    ddb_retry_attempts: int = 5          # pynamodb/botocore retries of a throttled request
    sdk_base: float = 0.5                # fma_client RetryPolicy: 0.5 s doubling to 8 s, 90 s in all
    sdk_cap: float = 8.0
    sdk_max_elapsed: float = 90.0
    poll_seconds: float = 10.0           # the API's Retry-After hint (poll_retry_after_seconds)
    authorizer_cache_seconds: float = 300.0
    train_seconds: float = 10.0          # a client's local training between download and upload
    # Lambda durations (seconds, warm) and cold starts; memory in MB from the stack's config.
    seconds: tuple = (("api", 0.05), ("authorizer", 0.02), ("ingest", 0.3))
    cold: tuple = (("api", 0.8), ("authorizer", 0.5), ("ingest", 1.5))
    memory_mb: tuple = (("api", 512), ("authorizer", 256), ("ingest", 1536))

    time_scale: float = 1.0              # a sampled run's stretch of the conflict window (see sampled)

    def of(self, name: str, what: str) -> float:
        return dict(getattr(self, what))[name]

    def ddb_delays(self) -> tuple[float, ...]:
        """botocore's legacy retry delays for throttling: 50 ms doubling (full jitter's mean)."""
        return tuple(0.05 * 2 ** i for i in range(self.ddb_retry_attempts))


def sampled(limits: Limits, f: float) -> Limits:
    """The limits for a run of a fraction `f` of the clients that stands for all of them: every
    rate, burst and concurrency times f, the transaction conflict window (and transact()'s
    sleeps) divided by f, so each resource's load relative to its capacity, and each item's
    arrivals per conflict window, are the full run's."""
    if f >= 1.0:
        return limits
    cap = limits.ingest_max_concurrency
    return replace(
        limits, wcu_per_key=limits.wcu_per_key * f, rcu_per_key=limits.rcu_per_key * f,
        s3_put_per_prefix=limits.s3_put_per_prefix * f, s3_get_per_prefix=limits.s3_get_per_prefix * f,
        lambda_account=max(1, round(limits.lambda_account * f)),
        api_account_rate=limits.api_account_rate * f, api_account_burst=limits.api_account_burst * f,
        api_stage_rate=limits.api_stage_rate * f, api_stage_burst=limits.api_stage_burst * f,
        ingest_max_concurrency=None if cap is None else max(1, round(cap * f)),
        txn_window=limits.txn_window / f, time_scale=limits.time_scale / f)


def from_config(config: dict[str, Any], **overrides: Any) -> Limits:
    """Limits with the design's recorded configuration (keys of the profile's `config`)."""
    mem = {"api": config.get("api_memory_mb", 512), "authorizer": config.get("authorizer_memory_mb", 256),
           "ingest": config.get("ingest_memory_mb", 1536)}
    base = Limits(
        api_stage_rate=float(config.get("api_rate_limit", 1500)),
        api_stage_burst=float(config.get("api_burst_limit", 3000)),
        ingest_max_concurrency=config.get("ingest_max_concurrency"),
        ingest_batch_size=int(config.get("ingest_batch_size", 10)),
        visibility_seconds=6.0 * float(config.get("ingest_timeout_s", 120)),
        max_receive_count=int(config.get("ingest_max_receive_count", 5)),
        max_ingest_attempts=int(config.get("max_ingest_attempts", 4)),
        ingest_retry_base=float(config.get("ingest_retry_base_seconds", 2)),
        ingest_retry_cap=float(config.get("ingest_retry_cap_seconds", 300)),
        transact_attempts=int(config.get("transact_attempts", 8)),
        transact_base=float(config.get("transact_base_seconds", 0.02)),
        transact_cap=float(config.get("transact_cap_seconds", float("inf"))),
        transact_low=float(config.get("transact_jitter_low", 0.0)),
        single_write_attempts=int(config.get("single_write_attempts", 1)),
        ddb_retry_attempts=int(config.get("ddb_retry_attempts", 5)),
        poll_seconds=float(config.get("poll_retry_after_seconds", 10)),
        authorizer_cache_seconds=float(config.get("authorizer_cache_seconds", 300)),
        memory_mb=tuple(mem.items()),
    )
    return replace(base, **overrides)


#: quotas raised for 100,000 clients (docs/scale.md): the account's API and Lambda limits, the stage.
RAISED = {"api_account_rate": 30_000.0, "api_account_burst": 15_000.0, "api_stage_rate": 25_000.0,
          "api_stage_burst": 25_000.0, "lambda_account": 5_000}
