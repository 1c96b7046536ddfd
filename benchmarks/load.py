"""Load benchmark: simulated clients through real rounds against local mode on loopback.

Starts `fma local up` on 127.0.0.1 (a subprocess: the server does not share the benchmark's
GIL), creates a FedAvg experiment with a float32 model, registers the clients with one
enrollment token, then runs the rounds. In each round every client, on a pool of threads:
GET model, downloads it (presigned GET), adds `c * pattern` to it, uploads the update and polls
GET round until its update is ACCEPTED, as the SDK's `submit(wait=True)` does. Even clients
upload with a direct PUT, odd ones with a presigned POST (the SDK's path for files over 4 MiB),
so both paths are measured. A watcher polls the round to time last upload -> published.

Saturation: before the rounds, `--saturation-clients` (50) simulated clients each run a closed
loop of GET model and GET round (no think time, as many requests as the server answers) for
`--saturation-seconds` (10): the API's requests/s at saturation and the p50/p99 of both routes.
Then a paced window as long: the same clients send `--paced-rps` (300) requests/s in all on a
fixed schedule (clients that poll), each latency counted from when its request was due: the
p99 at that rate, the issue's target (300 requests/s from 50 clients, p99 under 100 ms).

It checks, and exits 1 otherwise: zero 5xx (and every saturation request 200); per round
accepted == clients, rejected == late == 0, every update APPLIED and each client exactly once;
the published model equals the weighted mean of what was sent; the experiment COMPLETED with
every client registered once. Bounded: a fixed number of clients and rounds, polls at fixed
intervals, a fixed saturation window, and a hard deadline.

    make bench-load                      # 200 clients on 20 threads, 1M params, 3 rounds
    python benchmarks/load.py --quick    # 20 clients on 20 threads, 100k params (CI)
    python benchmarks/load.py --rounds 0 # registration and the saturation window only
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.client
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests

from fma.local import hot_keys as meter
from fma.local.emulation import HOT_KEYS_ENV
from fma.local.process import local_mode_process
from fma_client import Developer, tensors

ROOT = Path(__file__).resolve().parents[1]
POLL, MAX_POLL = 0.5, 5.0  # a client's poll of its round (the SDK's Waiter)
WATCH = 0.05  # the watcher's poll of the round once every update is uploaded (last upload -> published)
HTTP_TIMEOUT = (5.0, 60.0)
ENDPOINTS = ("register", "GET model", "S3 GET model", "PUT update", "POST update (presign)", "S3 POST update",
             "GET round (client)", "GET round (watcher)")


@dataclass(frozen=True)
class Config:
    clients: int = 200
    threads: int = 20
    params: int = 1_000_000
    rounds: int = 3
    timeout: float = 1800.0
    saturation_clients: int = 50
    saturation_seconds: float = 10.0
    paced_rps: float = 300.0


FULL = Config()
QUICK = Config(clients=20, threads=20, params=100_000, rounds=3, timeout=120.0, saturation_seconds=3.0)
SATURATION_ROUTES = ("GET model", "GET round")


class BenchError(Exception):
    pass


@dataclass
class Recorder:
    """Every HTTP exchange: (endpoint, status, seconds); thread-safe."""

    samples: list[tuple[str, int, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, label: str, status: int, seconds: float) -> None:
        with self.lock:
            self.samples.append((label, status, seconds))


class TimedSession(requests.Session):
    """A requests session that records each call under the `label` it is given."""

    def __init__(self, recorder: Recorder):
        super().__init__()
        self.recorder = recorder

    def request(self, method: str, url: str, *args: Any, label: str = "other", **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        start = time.perf_counter()
        response = super().request(method, url, *args, **kwargs)
        self.recorder.add(label, response.status_code, time.perf_counter() - start)
        return response


@dataclass
class Sim:
    index: int
    client_id: str
    token: str
    weight: int


@dataclass
class RoundResult:
    n: int
    seconds: float
    publish_seconds: float | None
    accepted: int
    rejected: int
    late: int
    applied: int
    distinct: int
    aggregation_seconds: float | None
    model_ok: bool


class Bench:
    def __init__(self, url: str, admin: str, cfg: Config, deadline: float):
        self.url, self.cfg, self.deadline = url.rstrip("/") + "/v1", cfg, deadline
        self.recorder = Recorder()
        self.local = threading.local()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.last_upload, self.uploads, self.sims = 0.0, 0, []
        self.stop = threading.Event()
        self.rounds: list[RoundResult] = []
        self.saturation, self.paced = Recorder(), Recorder()
        self.saturation_seconds = self.paced_seconds = 0.0
        dev_token = Developer(url, admin).create_token("developer", name="load")["token"]
        self.dev = Developer(url, dev_token)
        self.dev_headers = {"Authorization": f"Bearer {dev_token}"}
        rng = np.random.default_rng(0)
        rows = cfg.params // 1000 - 1
        self.initial = {"layer/kernel": rng.normal(size=(rows, 1000)).astype(np.float32),
                        "layer/bias": rng.normal(size=1000).astype(np.float32)}
        self.pattern = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in self.initial.items()}

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def session(self) -> TimedSession:
        if not hasattr(self.local, "session"):
            self.local.session = TimedSession(self.recorder)
        return self.local.session

    def check_time(self, what: str) -> None:
        if self.stop.is_set():
            raise BenchError(f"stopped after an error while {what}")
        if time.monotonic() > self.deadline:
            raise BenchError(f"hard deadline passed while {what}")

    def call(self, method: str, path: str, token: str, label: str, ok: tuple[int, ...], **kw: Any) -> Any:
        self.check_time(label)
        r = self.session.request(method, f"{self.url}/{path}", label=label,
                                 headers={"Authorization": f"Bearer {token}", **kw.pop("headers", {})}, **kw)
        if r.status_code not in ok:
            raise BenchError(f"{method} {path} -> {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    # -- the clients ---------------------------------------------------------------------------

    def register(self, i: int, exp_id: str, enroll: str) -> Sim:
        for attempt in range(30):
            r = self.session.request("POST", f"{self.url}/experiments/{exp_id}/clients", label="register",
                                     json={"name": f"load-{i}"}, headers={"Authorization": f"Bearer {enroll}"})
            if r.status_code == 201:
                body = r.json()
                return Sim(i, body["client_id"], body["token"], weight=10 + i % 7)
            if r.status_code != 409 or "REGISTRATION_CONFLICT" not in r.text:
                raise BenchError(f"register {i} -> {r.status_code} {r.text[:300]}")
            self.check_time("registering")
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
        raise BenchError(f"register {i}: too many conflicts")

    @staticmethod
    def coef(sim: Sim, n: int) -> float:
        return ((sim.index * 7 + n * 13) % 11 - 5) / 100

    def client_round(self, sim: Sim, exp_id: str, n: int) -> None:
        base = f"experiments/{exp_id}"
        info = self.call("GET", f"{base}/model", sim.token, "GET model", (200,))
        if info["round"] != n:
            raise BenchError(f"client {sim.index}: model says round {info['round']}, expected {n}")
        data = self.session.request("GET", info["url"], label="S3 GET model").content
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise BenchError(f"client {sim.index}: model bytes do not match sha256")
        c = self.coef(sim, n)
        weights = {k: v + np.float32(c) * self.pattern[k] for k, v in tensors.decode(data).items()}
        body = tensors.encode(weights, tensors.update_metadata(sim.weight, n, {"loss": 1.0 / n}))
        path = f"{base}/rounds/{n}/updates"
        if sim.index % 2 == 0:
            self.call("PUT", path, sim.token, "PUT update", (202,), data=body,
                      headers={"Content-Type": "application/octet-stream"})
        else:
            up = self.call("POST", path, sim.token, "POST update (presign)", (201,),
                           json={"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})["upload"]
            r = self.session.request("POST", up["url"], label="S3 POST update", data=up["fields"],
                                     files={"file": ("update.safetensors", body, "application/octet-stream")})
            if r.status_code not in (200, 201, 204):
                raise BenchError(f"client {sim.index}: S3 POST -> {r.status_code} {r.text[:300]}")
        with self.lock:
            self.last_upload = max(self.last_upload, time.monotonic())
            self.uploads += 1
        delay = POLL
        while True:  # as the SDK's submit(wait=True): poll with backoff until the update is validated
            entries = self.call("GET", f"{base}/rounds/{n}", sim.token, "GET round (client)", (200,))["updates"]
            status = entries[-1]["status"] if entries else None
            if status in ("ACCEPTED", "APPLIED"):
                return
            if status in ("REJECTED", "LATE"):
                raise BenchError(f"client {sim.index} round {n}: update {status}: {entries[-1].get('reason')}")
            time.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL)

    # -- the rounds ----------------------------------------------------------------------------

    def watch(self, exp_id: str, n: int, out: dict[str, float]) -> None:
        """Polls the round as the developer until it is PUBLISHED (or FAILED, or the deadline)."""
        token = self.dev_headers["Authorization"].split()[1]
        while time.monotonic() < self.deadline and not self.stop.is_set():
            state = self.call("GET", f"experiments/{exp_id}/rounds/{n}", token, "GET round (watcher)", (200,))["state"]
            if state in ("PUBLISHED", "FAILED"):
                out[state] = time.monotonic()
                return
            time.sleep(WATCH if self.uploads >= len(self.sims) else 1.0)  # fine-grained once all uploaded

    def run_round(self, exp_id: str, sims: list[Sim], n: int, prev: dict[str, np.ndarray]) -> tuple[RoundResult,
                                                                                                    dict]:
        seen: dict[str, float] = {}
        self.last_upload, self.uploads, self.sims = 0.0, 0, sims
        watcher = threading.Thread(target=self._guard, args=(self.watch, exp_id, n, seen), daemon=True)
        start = time.monotonic()
        watcher.start()
        with ThreadPoolExecutor(self.cfg.threads, thread_name_prefix="client") as pool:
            for future in [pool.submit(self._guard, self.client_round, sim, exp_id, n) for sim in sims]:
                future.result()
        if self.errors:
            self.stop.set()
        watcher.join(max(0.0, self.deadline - time.monotonic()))
        if self.errors:
            raise BenchError(f"round {n}: " + "; ".join(self.errors[:3]))
        if "PUBLISHED" not in seen:
            rnd = self.dev.round(exp_id, n)
            raise BenchError(f"round {n} was not published ({seen or 'deadline passed'}): state {rnd['state']}, "
                             f"accepted {rnd['accepted']}, rejected {rnd['rejected']}, reason {rnd['reason']}")
        rnd = self.dev.round(exp_id, n)
        applied_by = time.monotonic() + 60  # updates are marked APPLIED right after the publish
        while sum(u["status"] == "APPLIED" for u in rnd["updates"]) < len(sims) and time.monotonic() < min(
                applied_by, self.deadline):
            time.sleep(0.2)
            rnd = self.dev.round(exp_id, n)
        statuses = collections.Counter(u["status"] for u in rnd["updates"])
        total = sum(s.weight for s in sims)
        shift = sum(s.weight * self.coef(s, n) for s in sims) / total
        published = self.dev.download_model(exp_id, n)
        expected = {k: v.astype(np.float64) + shift * self.pattern[k] for k, v in prev.items()}
        model_ok = all(np.allclose(published[k], expected[k], rtol=1e-5, atol=1e-5) for k in expected)
        result = RoundResult(
            n, time.monotonic() - start, seen["PUBLISHED"] - self.last_upload, rnd["accepted"], rnd["rejected"],
            rnd["late"], statuses["APPLIED"], len({u["client_id"] for u in rnd["updates"]}),
            rnd.get("aggregation_seconds"), model_ok)
        return result, published

    def saturate(self, exp_id: str, sims: list[Sim]) -> None:
        """`saturation_clients` closed loops of GET model then GET round (round 1 OPEN) for
        `saturation_seconds`: the server answers as fast as it can, nothing waits in between.
        Then the paced window: the same clients send `paced_rps` requests/s in all on a fixed
        schedule, the load of clients that poll, so its p99 is the latency at that rate."""
        cfg = self.cfg
        if cfg.saturation_clients <= 0 or cfg.saturation_seconds <= 0:
            return
        self.saturation_seconds = self._window(exp_id, sims, self.saturation, interval=None)
        if cfg.paced_rps > 0:
            # each client sends one request every `interval` s: clients / interval = paced_rps
            self.paced_seconds = self._window(exp_id, sims, self.paced, interval=cfg.saturation_clients / cfg.paced_rps)

    def _window(self, exp_id: str, sims: list[Sim], recorder: Recorder, interval: float | None) -> float:
        """One window of `saturation_clients` loops over GET model and GET round on kept-alive
        connections; returns its length. Paced (`interval` s between a client's requests, the
        clients' phases spread evenly), a request's latency counts from when it was due, so a
        server that falls behind is charged for the wait (no coordinated omission)."""
        cfg = self.cfg
        stop_at = time.monotonic() + cfg.saturation_seconds
        paths = dict(zip(SATURATION_ROUTES, (f"experiments/{exp_id}/model", f"experiments/{exp_id}/rounds/1"),
                         strict=True))
        barrier = threading.Barrier(cfg.saturation_clients + 1)
        started = [0.0]

        def loop(i: int) -> None:
            # http.client on one kept-alive connection: a light client leaves the cores to the server
            target = urlsplit(self.url)
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=HTTP_TIMEOUT[1])
            headers = {"Authorization": f"Bearer {sims[i % len(sims)].token}"}
            barrier.wait()
            k = 0
            while time.monotonic() < stop_at and not self.stop.is_set():
                for label, path in paths.items():
                    due = time.perf_counter()
                    if interval is not None:
                        due = started[0] + (k + i / cfg.saturation_clients) * interval
                        k += 1
                        time.sleep(max(0.0, due - time.perf_counter()))
                    conn.request("GET", f"{target.path}/{path}", headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                    recorder.add(label, response.status, time.perf_counter() - due)
                    if response.status != 200:
                        raise BenchError(f"saturation {label} -> {response.status} {body[:200]!r}")
            conn.close()

        with ThreadPoolExecutor(cfg.saturation_clients, thread_name_prefix="saturate") as pool:
            futures = [pool.submit(self._guard, loop, i) for i in range(cfg.saturation_clients)]
            started[0] = time.perf_counter()
            barrier.wait()
            t0 = time.monotonic()
            for future in futures:
                future.result()
        seconds = time.monotonic() - t0
        if self.errors:
            raise BenchError("saturation: " + "; ".join(self.errors[:3]))
        return seconds

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            with self.lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.stop.set()

    def run(self) -> dict[str, Any]:
        """Registers the clients and runs the rounds; `self.rounds` fills as they finish."""
        cfg = self.cfg
        exp = self.dev.create_experiment("load", self.initial, rounds={"min_updates": cfg.clients,
                                                                       "total_rounds": max(1, cfg.rounds)})
        enroll = self.dev.enrollment_token(exp["id"], max_uses=cfg.clients)["token"]
        sims: list[Sim | None] = [None] * cfg.clients

        def reg(i: int) -> None:
            sims[i] = self.register(i, exp["id"], enroll)

        t0 = time.monotonic()
        with ThreadPoolExecutor(cfg.threads, thread_name_prefix="register") as pool:
            list(pool.map(lambda i: self._guard(reg, i), range(cfg.clients)))
        if self.errors or None in sims:
            raise BenchError("registration failed: " + "; ".join(self.errors[:3]))
        self.saturate(exp["id"], sims)  # type: ignore[arg-type]
        prev = dict(self.initial)
        for n in range(1, cfg.rounds + 1):
            result, prev = self.run_round(exp["id"], sims, n, prev)  # type: ignore[arg-type]
            self.rounds.append(result)
            print(f"round {n}/{cfg.rounds} published: {result.seconds:.1f} s", file=sys.stderr, flush=True)
            if self.errors:
                raise BenchError(f"round {n}: " + "; ".join(self.errors[:3]))
        final = self.dev.experiment(exp["id"])
        return {"seconds": time.monotonic() - t0, "status": final["status"], "clients": final["clients"],
                        "model_version": final["model_version"]}


# -- local mode ---------------------------------------------------------------------------------


BACKENDS = ("sqlite_fs", "aws-emulation")


@contextmanager
def local_stack(state_dir: Path, timeout: float = 60.0, backend: str = "sqlite_fs", hot_keys: Path | None = None):
    """`fma local up --backend <backend>` on a free loopback port, ephemeral; yields (url, admin
    token); always stopped. With `hot_keys` (aws-emulation) moto meters every DynamoDB write per
    partition key into that file (fma.local.hot_keys)."""
    env = {"POWERTOOLS_LOG_LEVEL": "ERROR"} | ({HOT_KEYS_ENV: str(hot_keys)} if hot_keys else {})
    with local_mode_process(state_dir, extra_args=["--ephemeral", "--backend", backend],
                            env=env, cwd=ROOT, timeout=timeout) as started:
        yield started


# -- report -------------------------------------------------------------------------------------


def latency_rows(recorder: Recorder, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per label: requests, p50/p99/max ms, 4xx and 5xx counts."""
    by_label: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
    for label, status, secs in recorder.samples:
        by_label[label].append((status, secs))
    rows = []
    for label in labels:
        items = by_label.get(label, [])
        if not items:
            continue
        ms = np.array([s for _, s in items]) * 1000
        rows.append({"endpoint": label, "requests": len(items), "p50": float(np.percentile(ms, 50)),
                     "p99": float(np.percentile(ms, 99)), "max": float(ms.max()),
                     "4xx": sum(400 <= st < 500 for st, _ in items), "5xx": sum(st >= 500 for st, _ in items)})
    return rows


def summarize_saturation(recorder: Recorder, seconds: float, clients: int) -> dict[str, Any]:
    rows = latency_rows(recorder, SATURATION_ROUTES)
    requests_ = sum(r["requests"] for r in rows)
    return {"clients": clients, "seconds": seconds, "requests": requests_, "rows": rows,
            "rps": requests_ / seconds if seconds else None, "errors": sum(r["4xx"] + r["5xx"] for r in rows)}


def print_saturation(sat: dict[str, Any], paced_rps: float | None = None) -> None:
    """The closed-loop window (`paced_rps` None) or the paced one (its offered rate)."""
    if not sat["rows"]:
        return
    how = "in closed loops" if paced_rps is None else f"paced at {paced_rps:.0f} req/s in all (latency from due time)"
    print(f"{'saturation' if paced_rps is None else 'paced'}: {sat['clients']} clients {how} for "
          f"{sat['seconds']:.1f} s: {sat['requests']} API requests = {sat['rps']:.1f} req/s")
    print(f"{'endpoint':<22}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'4xx':>6}{'5xx':>6}")
    for r in sat["rows"]:
        print(f"{r['endpoint']:<22}{r['requests']:>9}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['max']:>9.1f}"
              f"{r['4xx']:>6}{r['5xx']:>6}")


def summarize(recorder: Recorder, seconds: float) -> dict[str, Any]:
    rows = latency_rows(recorder, ENDPOINTS)
    api = sum(r["requests"] for r in rows if not r["endpoint"].startswith("S3"))
    return {"rows": rows, "api_requests": api, "all_requests": len(recorder.samples), "seconds": seconds,
            "five_xx": sum(r["5xx"] for r in rows)}


def print_report(cfg: Config, stats: dict[str, Any], rounds: list[RoundResult], final: dict[str, Any]) -> None:
    mb = (cfg.params * 4) / 1e6
    print(f"\nFMA load: {cfg.clients} clients on {cfg.threads} threads, {cfg.rounds} rounds, "
          f"{cfg.params:,} float32 params ({mb:.1f} MB per update), local mode on loopback")
    print(f"{'endpoint':<22}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'4xx':>6}{'5xx':>6}")
    for r in stats["rows"]:
        print(f"{r['endpoint']:<22}{r['requests']:>9}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['max']:>9.1f}"
              f"{r['4xx']:>6}{r['5xx']:>6}")
    secs = max(stats["seconds"], 1e-9)
    print(f"API requests: {stats['api_requests']} in {secs:.1f} s = {stats['api_requests'] / secs:.1f} req/s "
          f"({stats['all_requests'] / secs:.1f} req/s with the S3 transfers); "
          f"uploads {cfg.clients * cfg.rounds * mb / secs:.1f} MB/s")
    print(f"{'round':<7}{'seconds':>8}{'accepted':>9}{'rejected':>9}{'late':>6}{'APPLIED':>8}{'distinct':>9}"
          f"{'upload->published s':>20}{'aggregation s':>14}{'model':>7}")
    for r in rounds:
        agg = f"{r.aggregation_seconds:.2f}" if r.aggregation_seconds is not None else "-"
        pub = f"{r.publish_seconds:.2f}" if r.publish_seconds is not None else "-"
        print(f"{r.n:<7}{r.seconds:>8.1f}{r.accepted:>9}{r.rejected:>9}{r.late:>6}{r.applied:>8}{r.distinct:>9}"
              f"{pub:>20}{agg:>14}{'ok' if r.model_ok else 'WRONG':>7}")
    if final:
        print(f"experiment {final['status']}, model_version {final['model_version']}, clients {final['clients']}")


def print_hot_keys(out: dict[str, Any]) -> None:
    """The hottest DynamoDB keys of the whole run (registration, uploads, polls, seals,
    publishes), then the `HOTTEST_KEY` line; aws-emulation only (sqlite_fs has no partitions)."""
    counts = out.get("hot_keys")
    if counts is None:
        return
    accepted = sum(r.accepted for r in out["rounds"])
    print("\n".join(meter.table_lines(counts, accepted)))
    print(meter.hottest_line(counts, accepted))


def problems(cfg: Config, stats: dict[str, Any], rounds: list[RoundResult], final: dict[str, Any]) -> list[str]:
    out = [f"{stats['five_xx']} responses were 5xx"] if stats["five_xx"] else []
    for r in rounds:
        if (r.accepted, r.rejected, r.late, r.applied, r.distinct) != (cfg.clients, 0, 0, cfg.clients, cfg.clients):
            out.append(f"round {r.n}: accepted {r.accepted} rejected {r.rejected} late {r.late} "
                       f"APPLIED {r.applied} distinct {r.distinct} (want {cfg.clients} each, 0 rejected/late)")
        if not r.model_ok:
            out.append(f"round {r.n}: the published model is not the weighted mean of the updates")
    if len(rounds) != cfg.rounds:
        out.append(f"{len(rounds)} of {cfg.rounds} rounds ran")
    if cfg.rounds and (final.get("status"), final.get("clients"), final.get("model_version")) != (
            "COMPLETED", cfg.clients, cfg.rounds):
        out.append(f"experiment ended as {final}")
    return out


def run(cfg: Config, backend: str = "sqlite_fs") -> dict[str, Any]:
    """Run the benchmark; returns {"stats", "rounds", "final", "problems"}, partial after an error."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fma-load-") as tmp:
        counts_file = Path(tmp) / "hot-keys.json" if backend == "aws-emulation" else None
        with local_stack(Path(tmp) / "state", backend=backend, hot_keys=counts_file) as (url, admin):
            bench = Bench(url, admin, cfg, deadline=started + cfg.timeout)
            t0 = time.monotonic()
            try:
                final, error = bench.run(), None
            except BenchError as exc:
                final, error = {}, str(exc)
            stats = summarize(bench.recorder, time.monotonic() - t0)
            saturation = summarize_saturation(bench.saturation, bench.saturation_seconds, cfg.saturation_clients)
            paced = summarize_saturation(bench.paced, bench.paced_seconds, cfg.saturation_clients)
        counts = meter.load(counts_file) if counts_file is not None and counts_file.exists() else None
    found = problems(cfg, stats, bench.rounds, final)
    for name, window in (("saturation", saturation), ("paced", paced)):
        if window["errors"]:
            found.append(f"{name}: {window['errors']} responses were not 200")
    return {"stats": stats, "rounds": bench.rounds, "final": final, "problems": [error] * bool(error) + found,
            "hot_keys": counts, "saturation": saturation, "paced": paced}


def headline(out: dict[str, Any]) -> dict[str, float | None]:
    """The issue's targets: API req/s, p99 of GET model and GET round, last upload -> published."""
    rows = {r["endpoint"]: r for r in out["stats"]["rows"]}
    sat = out["saturation"]
    sat_rows = {r["endpoint"]: r for r in sat["rows"]}
    paced = {r["endpoint"]: r for r in out["paced"]["rows"]}
    publish = [r.publish_seconds for r in out["rounds"] if r.publish_seconds is not None]
    return {f"saturation req/s ({sat['clients']} clients)": sat["rps"],
            "saturation p99 GET model ms": sat_rows.get("GET model", {}).get("p99"),
            "saturation p99 GET round ms": sat_rows.get("GET round", {}).get("p99"),
            "paced req/s (offered: --paced-rps)": out["paced"]["rps"],
            "paced p99 GET model ms": paced.get("GET model", {}).get("p99"),
            "paced p99 GET round ms": paced.get("GET round", {}).get("p99"),
            "rounds API req/s": out["stats"]["api_requests"] / max(out["stats"]["seconds"], 1e-9),
            "rounds p99 GET model ms": rows.get("GET model", {}).get("p99"),
            "rounds p99 GET round ms": rows.get("GET round (client)", {}).get("p99"),
            "upload->published s (median)": float(np.median(publish)) if publish else None}


def print_side_by_side(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    print("\n" + f"{'':<36}" + "".join(f"{n:>16}" for n in names)
          + ("" if len(names) < 2 else f"{'ratio':>10}"))
    heads = {n: headline(out) for n, out in results.items()}
    for metric in heads[names[0]]:
        values = [heads[n][metric] for n in names]
        cells = "".join(f"{v:>16.1f}" if v is not None else f"{'-':>16}" for v in values)
        ratio = f"{values[0] / values[1]:>10.2f}" if len(values) > 1 and values[0] and values[1] else ""
        print(f"{metric:<36}{cells}{ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 clients x 100k params (CI)")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--params", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--timeout", type=float, help="hard deadline of the whole run, seconds")
    parser.add_argument("--saturation-clients", type=int, help="closed-loop clients of the saturation window (50)")
    parser.add_argument("--saturation-seconds", type=float, help="length of the saturation window (0: none)")
    parser.add_argument("--paced-rps", type=float,
                        help="requests/s the saturation clients send in all in the paced window (300; 0: none)")
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both",
                        help="local mode backend(s), side by side in one run (default both)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    cfg = Config(**{k: getattr(args, k) if getattr(args, k) is not None else getattr(base, k)
                    for k in ("clients", "threads", "params", "rounds", "timeout", "saturation_clients",
                              "saturation_seconds", "paced_rps")})
    if cfg.params < 2000 or cfg.params % 1000:
        parser.error("--params must be a multiple of 1000, at least 2000")
    results, failed = {}, False
    for backend in BACKENDS if args.backend == "both" else (args.backend,):
        try:
            out = run(cfg, backend)
        except BenchError as exc:  # local mode did not start
            print(f"FAILED ({backend}): {exc}", file=sys.stderr)
            return 1
        print(f"\n== backend {backend} ==")
        print_saturation(out["saturation"])
        print_saturation(out["paced"], cfg.paced_rps)
        print_report(cfg, out["stats"], out["rounds"], out["final"])
        print_hot_keys(out)
        for p in out["problems"]:
            print(f"FAILED ({backend}): {p}", file=sys.stderr)
        failed = failed or bool(out["problems"])
        results[backend] = out
    print_side_by_side(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
