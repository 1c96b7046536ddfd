"""The discrete-event simulation of one round: N clients arriving over a window.

Each client registers, downloads the model, trains `train_seconds`, uploads, and polls every
`poll_seconds` until the round seals; its upload's S3 event is an SQS message that ingest
accepts (the access pattern of each operation is its recorded profile). The last accept (the
quota is every client) seals. Model:

- API Gateway: token buckets for the account and the stage; a 429 (or a Lambda throttle) is
  retried by the SDK (RetryPolicy: 0.5 s doubling to 8 s, 90 s in all), then the client gives up.
- DynamoDB and S3: per key (or prefix) capacity per `tick`; a sharded class spreads its load over
  its shards. A request succeeds with the share of its resource's demand the capacity served in
  the previous tick; a throttled request is retried `ddb_retry_attempts` times inside the
  invocation, then the invocation fails.
- Transaction conflicts: an item a transaction wrote is held `txn_window`; a write on it inside
  that window conflicts and `transact()` retries it with its jittered sleeps.
- Lambda: executions count against the account's concurrency (and ingest's maximum, if the
  design sets one); a new environment is a cold start. Ingest over the limit without a maximum is
  a throttled invocation: the message returns after the visibility timeout, a receive spent.
- Ingest failures: `ingest_failed`'s retry (visibility backoff 2, 4, 8 s ... jittered) until
  `max_ingest_attempts`, then the update is FAILED; a message received `max_receive_count` times
  without success goes to the DLQ.
"""

from __future__ import annotations

import collections
import heapq
import random
from dataclasses import dataclass, field, replace

from scalemodel.buckets import Backoff, Buckets, Concurrency, Items, transact
from scalemodel.limits import PRICES, Limits
from scalemodel.plan import Plan


@dataclass
class Result:
    clients: int
    window: float
    sealed_at: float | None = None
    accepted: int = 0
    throttled: collections.Counter = field(default_factory=collections.Counter)
    conflicted: int = 0
    retries: int = 0
    dlq: int = 0
    failed_updates: int = 0
    gave_up: int = 0
    cold_starts: int = 0
    usage: collections.Counter = field(default_factory=collections.Counter)
    registered: int = 0
    registered_at: float | None = None
    #: throttled tries per resource (key class or prefix): where the design runs out
    hot: collections.Counter = field(default_factory=collections.Counter)

    def cost(self) -> float:
        return sum(PRICES[k] * v for k, v in self.usage.items() if k in PRICES)

    def scaled(self, clients: int, k: float) -> Result:
        """A sampled run's counts for all `clients` (each count times k = 1/f)."""
        c = collections.Counter
        return Result(clients, self.window, self.sealed_at, round(self.accepted * k),
                      c({n: v * k for n, v in self.throttled.items()}), round(self.conflicted * k),
                      round(self.retries * k), round(self.dlq * k), round(self.failed_updates * k),
                      round(self.gave_up * k), round(self.cold_starts * k),
                      c({n: v * k for n, v in self.usage.items()}), round(self.registered * k), self.registered_at,
                      c({n: v * k for n, v in self.hot.items()}))


STAGE, ACCOUNT = ("api", "stage"), ("api", "account")


def capacity(limits: Limits, tick: float) -> Buckets:
    """The buckets of a round: per key class (times its shards), per S3 prefix, the API's two."""
    per_key = {"rcu": limits.rcu_per_key, "wcu": limits.wcu_per_key,
               "s3put": limits.s3_put_per_prefix, "s3get": limits.s3_get_per_prefix}
    api = {STAGE: (limits.api_stage_rate, limits.api_stage_burst),
           ACCOUNT: (limits.api_account_rate, limits.api_account_burst)}

    def rate(r: tuple) -> float:
        if r in api:
            return api[r][0]
        return per_key[r[0]] * (r[-1] if r[0] in ("rcu", "wcu") else 1)

    def burst(r: tuple) -> float:
        return api[r][1] if r in api else rate(r) * tick

    return Buckets(tick, rate, burst)


class Simulation:
    def __init__(self, plans: dict[str, Plan], limits: Limits, clients: int, window: float, seed: int = 0,
                 tick: float = 0.5) -> None:
        self.plans, self.limits, self.n, self.window, self.tick = plans, limits, clients, window, tick
        self.rng = random.Random(seed)
        self.cap = capacity(limits, tick)
        self.items = Items(limits.txn_window, horizon=10.0 * limits.time_scale)
        self.txn_backoff = Backoff(limits.transact_attempts, limits.transact_base, limits.transact_cap,
                                   limits.transact_low)
        self.single_backoff = replace(self.txn_backoff, attempts=limits.single_write_attempts)
        self.lambdas = Concurrency(limits.lambda_account)
        self.events: list = []
        self.seq = 0
        self.res = Result(clients, window)
        self.waiting = 0
        self.receives: dict[int, int] = {}

    def at(self, t: float, what: str, client: int, arg: float = 0.0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, what, client, arg))

    def run(self, horizon: float = 7200.0) -> Result:
        for i in range(self.n):
            self.at(self.rng.uniform(0, self.window), "register", i)
        self.at(self.tick, "tick", -1)
        handlers = {"register": self.client_op, "download": self.client_op, "upload": self.client_op,
                    "message": self.message, "tick": self.on_tick, "seal": self.seal}
        while self.events and self.res.sealed_at is None and (self.unresolved() or self.res.accepted == self.n):
            t, _, what, client, arg = heapq.heappop(self.events)
            if t > horizon:
                break
            handlers[what](t, what, client, arg)
        self.res.cold_starts = self.lambdas.cold_starts
        return self.res

    def unresolved(self) -> bool:
        """Some client may still be accepted (not every one accepted, FAILED, in the DLQ or gone)."""
        r = self.res
        return r.accepted + r.failed_updates + r.dlq + r.gave_up < self.n

    # -- DynamoDB and S3 through a plan ------------------------------------------------------
    def execute(self, t: float, plan: Plan) -> bool:
        """Run the plan's requests at `t`; False when one failed after its retries."""
        res = self.res
        for step in plan.steps:
            if step.kind == "write":
                if not self._write(t, step):
                    return False
                continue
            if not self._request(step.resource, step.units, "s3" if step.kind == "s3" else "dynamodb", step.count):
                return False
        res.usage["ddb_read_unit"] += plan.read_units
        res.usage["ddb_write_unit"] += plan.write_units
        res.usage["s3_put"] += plan.s3_put
        res.usage["s3_get"] += plan.s3_get
        return True

    def _request(self, resource: tuple, units: float, service: str, count: int = 1) -> bool:
        """`count` requests on `resource`, each retried `ddb_retry_attempts` times while throttled
        (each try succeeds with the share the resource served last tick); False if one failed."""
        served, tries = self.cap.ok(resource), 1 + self.limits.ddb_retry_attempts
        if served >= 1.0:
            self.cap.demand[resource] += units * count
            return True
        miss = 1.0 - served
        throttles = count * sum(miss ** a for a in range(1, tries + 1))  # expected throttled tries
        self.cap.demand[resource] += units * (count + throttles)
        n = int(throttles) + (self.rng.random() < throttles - int(throttles))
        self.res.throttled[service] += n
        self.res.hot[resource] += n
        self.res.retries += n
        return self.rng.random() >= 1.0 - (1.0 - miss ** tries) ** count

    def _write(self, t: float, step) -> bool:
        """A write request `count` times (a repeated one, like the seal closing every counter
        shard, goes round the shards; a single one lands on a random shard: the client's)."""
        for i in range(step.count):
            keys = []
            for resource, units, item in step.items:
                if not self._request(resource, units, "dynamodb"):
                    return False
                if item is not None:
                    shard = i % resource[-1] if step.count > 1 else self.rng.randrange(resource[-1])
                    keys.append((item, shard))
            if not keys:
                continue
            backoff = self.txn_backoff if step.txn else self.single_backoff
            took, conflicts = transact(self.items, keys, t, backoff, self.rng, self.limits.time_scale, hold=step.txn)
            self.res.conflicted += conflicts
            self.res.retries += max(0, conflicts - (took is None))
            if took is None:
                return False
        return True

    # -- clients ------------------------------------------------------------------------------
    def api_call(self, t: float, plan: Plan) -> float | None:
        """The API Gateway requests and api Lambda executions of `plan`: their duration, or None."""
        took = 0.0
        for _ in range(plan.api):
            self.cap.ask(STAGE, 1)
            self.cap.ask(ACCOUNT, 1)
            if self.rng.random() >= min(self.cap.ok(STAGE), self.cap.ok(ACCOUNT)):
                self.res.throttled["api gateway"] += 1
                self.res.hot[STAGE] += 1
                return None
            seconds = self.lambdas.start("api", t, self.limits.of("api", "seconds"), self.limits.of("api", "cold"))
            if seconds is None:
                self.res.throttled["lambda"] += 1
                return None
            self.res.usage["api_request"] += 1
            self._lambda_usage("api", seconds)
            took += seconds
        return took

    def client_op(self, t: float, op: str, client: int, first: float) -> None:
        first = first or t
        plan = self.plans[op]
        took = self.api_call(t, plan)
        if took is not None and self.execute(t, plan):
            self.after(t + took, op, client)
            return
        attempt = self.receives.get(-client - 1, 0)
        self.receives[-client - 1] = attempt + 1
        delay = min(self.limits.sdk_cap, self.limits.sdk_base * 2 ** attempt)
        delay = delay / 2 + self.rng.uniform(0, delay / 2)
        if t + delay - first > self.limits.sdk_max_elapsed:
            self.res.gave_up += 1
            return
        self.res.retries += 1
        self.at(t + delay, op, client, first)

    def after(self, t: float, op: str, client: int) -> None:
        self.receives.pop(-client - 1, None)
        if op == "register":
            self.res.registered += 1
            if self.res.registered == self.n:
                self.res.registered_at = t
            self.at(t, "download", client)
        elif op == "download":
            self.at(t + self.limits.train_seconds, "upload", client)
        else:
            self.waiting += 1
            self.res.usage["sqs_request"] += 3  # send (S3's notification), receive, delete
            self.at(t + 0.1, "message", client)

    # -- ingest -------------------------------------------------------------------------------
    def message(self, t: float, _: str, client: int, __: float) -> None:
        limits = self.limits
        cap = limits.ingest_max_concurrency
        if cap is not None and self.lambdas.in_flight("ingest", t) >= cap:
            self.at(max(t, self.lambdas.next_free("ingest", t)) + 0.01, "message", client)
            return
        received = self.receives.get(client, 0) + 1
        self.receives[client] = received
        if received > limits.max_receive_count:
            self.res.dlq += 1
            return
        seconds = self.lambdas.start("ingest", t, limits.of("ingest", "seconds"), limits.of("ingest", "cold"), cap)
        if seconds is None:
            self.res.throttled["lambda"] += 1
            self.at(t + limits.visibility_seconds, "message", client)
            return
        self._lambda_usage("ingest", seconds, share=1 / limits.ingest_batch_size)
        if self.execute(t, self.plans["ingest"]):
            self.accept(t + seconds)
            return
        if received >= limits.max_ingest_attempts:
            if self.execute(t, self.plans["fail"]):  # FAILED is written on the update item
                self.res.failed_updates += 1
                return
            self.at(t + limits.visibility_seconds, "message", client)
            return
        step = min(limits.ingest_retry_cap, limits.ingest_retry_base * 2 ** (received - 1))
        self.res.retries += 1
        self.res.usage["sqs_request"] += 2  # change visibility, receive again
        self.at(t + step * (0.5 + 0.5 * self.rng.random()), "message", client)

    def accept(self, t: float) -> None:
        self.res.accepted += 1
        if self.res.accepted == self.n:
            self.seal(t)

    def seal(self, t: float, *_: object) -> None:
        """The sealing accept's extra requests; if one fails, the seal is retried (ingest's
        retry of the record, or the sweeper) a second later."""
        if self.execute(t, self.plans["seal"]):
            self.res.sealed_at = t
            return
        self.res.retries += 1
        self.at(t + 1.0, "seal", -1)

    # -- polls and capacity ticks -------------------------------------------------------------
    def on_tick(self, t: float, *_: object) -> None:
        """Polls of this tick in bulk (waiting clients / poll_seconds), then roll the capacity."""
        polls = self.waiting * self.tick / self.limits.poll_seconds
        plan = self.plans["poll"]
        self.res.usage["cloudfront_request"] += polls * plan.cdn
        if polls:
            requests = polls * plan.api
            self.cap.ask(STAGE, requests)
            self.cap.ask(ACCOUNT, requests)
            served = requests * min(self.cap.ok(STAGE), self.cap.ok(ACCOUNT))
            self.res.throttled["api gateway (polls)"] += requests - served
            self.res.hot[STAGE] += requests - served
            self.res.usage["api_request"] += served
            self._lambda_usage("api", self.limits.of("api", "seconds"), share=served)
            for step in plan.steps:
                if step.kind != "write":
                    self.cap.ask(step.resource, step.units * step.count * served / max(plan.api, 1))
                    missed = step.count * served / max(plan.api, 1) * (1 - self.cap.ok(step.resource))
                    self.res.throttled["dynamodb (polls)"] += missed
                    self.res.hot[step.resource] += missed
            self.res.usage["ddb_read_unit"] += plan.read_units * served / max(plan.api, 1)
        refresh = self.plans.get("refresh")
        if refresh is not None and refresh.steps:  # cached reads: once a second per warm environment
            environments = sum(self.lambdas.warm.values()) * self.tick
            for step in refresh.steps:
                self.cap.ask(step.resource, step.units * step.count * environments)
            self.res.usage["ddb_read_unit"] += refresh.read_units * environments
        self.cap.roll()
        self.at(t + self.tick, "tick", -1)

    def _lambda_usage(self, fn: str, seconds: float, share: float = 1.0) -> None:
        self.res.usage["lambda_request"] += share
        self.res.usage["lambda_gb_second"] += share * seconds * self.limits.of(fn, "memory_mb") / 1024
