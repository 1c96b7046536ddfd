"""The training client's side: join an experiment, fetch the model, submit updates."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

from fma_client import tensors
from fma_client._contract import check_num_examples, check_weights
from fma_client._enrollment import Enrollment
from fma_client._http import DEFAULT_TIMEOUT, RetryPolicy, TimeoutSpec, Transport
from fma_client._multipart import DEFAULT_WORKERS, MultipartUpload, ResumeFile, Source
from fma_client._pointer import PointerWatch, wait_for_change
from fma_client._registration import RegistrationStore
from fma_client._runner import ENDED, run_loop
from fma_client._wait import Waiter
from fma_client.developer import DIRECT_UPLOAD_LIMIT
from fma_client.errors import (
    Conflict,
    ExperimentEnded,
    FmaError,
    IntegrityError,
    PayloadTooLarge,
    RoundFailed,
    UpdateRejected,
)

log = logging.getLogger("fma_client")
Json = dict[str, Any]


@dataclass(frozen=True)
class ModelState:
    """The last model response and its bytes; bytes are kept so a 304 costs no download."""

    sha256: str | None
    data: bytes | None
    round: int | None
    version: int | None
    client_config: dict[str, Any]
    status: str
    #: "async" (FedBuff, the server's docs/async.md): no round quota to wait for.
    mode: str = "sync"
    #: the experiment's pointer object (fma_client._pointer), when the server has one
    poll_url: str | None = None


class Client(Enrollment):
    """One participant of one experiment.

    Give it a client `token` (and `client_id`) from an earlier `register()`, or an
    `enrollment_token`: the client then registers itself on first use and saves its
    registration (`registration_file`, default under the user's config folder; see
    `fma_client._registration`), so that a restarted client resumes as the same client
    without using the enrollment token again. `persist_registration=False` keeps it in memory.
    `url` is the server root (`http://127.0.0.1:8080`); a trailing `/v1` is accepted too.
    """

    def __init__(
        self,
        url: str,
        experiment_id: str,
        token: str | None = None,
        enrollment_token: str | None = None,
        session: requests.Session | None = None,
        name: str | None = None,
        *,
        client_id: str | None = None,
        timeout: TimeoutSpec = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        direct_upload_limit: int = DIRECT_UPLOAD_LIMIT,
        poll_interval: float = 2.0,
        registration_file: str | os.PathLike | None = None,
        persist_registration: bool = True,
        upload_workers: int = DEFAULT_WORKERS,
        resume_file: str | os.PathLike | None = None,
    ) -> None:
        self.http = Transport(url, token, session=session, timeout=timeout, retry=retry, sleep=sleep, clock=clock,
                              rng=rng)  # fmt: skip
        self.experiment_id = experiment_id
        self.enrollment_token = enrollment_token
        self.name = name
        self.client_id = client_id
        self.waiter = Waiter(sleep=sleep, clock=clock, hint=lambda: self.http.poll_hint, rng=self.http.rng)
        self.registration: RegistrationStore | None = None
        if persist_registration:
            self.registration = RegistrationStore(self.http.base_url, experiment_id, name, registration_file)
        self._claimed = False
        self._resumed = False  # the token came from a saved registration
        self.clock = clock
        self.direct_upload_limit = direct_upload_limit
        self.poll_interval = poll_interval
        self.model: ModelState | None = None
        self._dtypes: dict[str, np.dtype] = {}
        self._revalidate = False  # next get_model skips If-None-Match (state may have moved)
        #: multipart uploads: parts in flight at once, and where progress is kept (default: next to
        #: the registration file); `last_upload` is the latest multipart upload (its `sent` parts).
        self.upload_workers = upload_workers
        self.resume_file = resume_file
        self.last_upload: MultipartUpload | None = None
        self._watch: PointerWatch | None = None

    @property
    def token(self) -> str | None:
        return self.http.token

    def get_model(self) -> tuple[tensors.Weights, int | None, dict[str, Any]]:
        """`(weights, round, config)`: the model to train, the round to train it for, and
        the experiment's `client_config` plus `round`/`server-round`.

        `round` is None once the experiment is over. The bytes are cached by sha256: the
        request carries `If-None-Match` and a 304 (or an unchanged sha256) reuses them. The
        arrays are fresh copies each time, so training in place cannot corrupt the cache.
        """
        self._ensure_token()
        cached, headers = self.model, {}
        if cached and cached.sha256 and cached.status == "RUNNING" and not self._revalidate:
            headers["If-None-Match"] = f'"{cached.sha256}"'
        response = self._call_resumed(
            lambda: self.http.call("GET", "experiments", self.experiment_id, "model", headers=headers, ok=(200, 304))
        )
        if response.status_code != 304 or cached is None:
            self.model = cached = self._model_from(response.json(), cached)
        self._revalidate = False
        weights = tensors.decode(cached.data) if cached.data else {}
        self._dtypes = {name: arr.dtype for name, arr in weights.items()}
        return weights, cached.round, self._config(cached)

    def _model_from(self, body: Json, cached: ModelState | None) -> ModelState:
        sha = body.get("sha256")
        if cached is not None and sha and cached.sha256 == sha:
            data = cached.data
        elif sha and body.get("url"):
            data = self.http.download(body["url"])
            if tensors.sha256_hex(data) != sha:
                raise IntegrityError(
                    f"model of {self.experiment_id} (version {body.get('version')}): "
                    "downloaded bytes do not match the announced sha256"
                )
        else:
            data = None
        return ModelState(
            sha256=sha, data=data, round=body.get("round"), version=body.get("version"),
            client_config=dict(body.get("client_config") or {}),
            status=body.get("status") or "RUNNING", mode=body.get("mode") or "sync",
            poll_url=body.get("poll_url") if isinstance(body.get("poll_url"), str) else None,
        )  # fmt: skip

    @staticmethod
    def _config(model: ModelState) -> dict[str, Any]:
        config = dict(model.client_config)
        if model.round is not None:
            config.update({"round": model.round, "server-round": model.round})
        return config

    # -- updates -----------------------------------------------------------------------------

    def submit(
        self,
        weights: Mapping[str, Any],
        num_examples: int,
        metrics: Mapping[str, Any] | None = None,
        round: int | None = None,
        wait: bool = True,
        timeout: float = 600.0,
    ) -> Json:
        """Upload an update for `round` (default: the round of the last `get_model`).

        Small files go through the API (PUT), large ones straight to S3 with a presigned POST
        bound to their size and sha256, and from the server's multipart threshold up (default
        100 MiB) as a multipart upload whose parts go concurrently and resume after a crash
        (`submit_file` for updates too large to hold in memory). With `wait`, returns once the server ACCEPTED the
        update and raises UpdateRejected (REJECTED with the reason, LATE, or FAILED when the
        server could not ingest it for a fault of its own: the update may be sent again).
        """
        self._ensure_token()
        n = round if round is not None else (self.model.round if self.model else None)
        if n is None:
            raise FmaError("no round to submit for: call get_model() first or pass round=")
        weights = check_weights(weights, None, "submit")
        meta = tensors.update_metadata(check_num_examples(num_examples, "submit"), n, metrics)
        data = tensors.encode(weights, meta, self._dtypes)
        try:
            reply = self._upload(n, data)
        except Conflict:
            self._revalidate = True
            raise
        result = {"update_id": reply.get("update_id"), "round": n, "status": "UPLOADING"}
        if not wait:
            return result
        return {**result, **self.wait_for_update(n, timeout)}

    def submit_file(self, path: str | os.PathLike, round: int | None = None, wait: bool = True,
                    timeout: float = 600.0) -> Json:
        """Upload a ready safetensors update file (with `fma.num_examples` in its metadata) for
        `round`, without reading it into memory: above the server's multipart threshold its
        parts are read by offset and sent concurrently, and a killed process that calls this
        again with the same file resumes, sending only the parts the server does not hold."""
        self._ensure_token()
        n = round if round is not None else (self.model.round if self.model else None)
        if n is None:
            raise FmaError("no round to submit for: call get_model() first or pass round=")
        reply = self._upload(n, Source(path=path))
        result = {"update_id": reply.get("update_id"), "round": n, "status": "UPLOADING"}
        return {**result, **self.wait_for_update(n, timeout)} if wait else result

    def _upload(self, n: int, data: bytes | Source) -> Json:
        path = ("experiments", self.experiment_id, "rounds", n, "updates")
        source = data if isinstance(data, Source) else Source(data=data)
        if source.size <= self.direct_upload_limit:
            try:
                return self.http.call_json("PUT", *path, data=source.read_all())
            except PayloadTooLarge:
                log.info("direct upload refused as too large; using a presigned POST")
        sha = source.sha256()
        resume = ResumeFile(self._resume_path())
        identity = {"experiment_id": self.experiment_id, "round": n, "size": source.size, "sha256": sha}
        saved = resume.load(identity)
        if saved and saved.get("update_id"):
            job = self._multipart_job(path, saved["update_id"], source, resume)
            if job.resume_from(saved):
                self.last_upload = job
                return {"update_id": saved["update_id"]}
        reply = self.http.call_json("POST", *path, json={"size": source.size, "sha256": sha})
        upload = reply["upload"]
        if "multipart" in upload:
            job = self._multipart_job(path, reply["update_id"], source, resume)
            self.last_upload = job
            job.run(upload["multipart"], {"identity": identity, "update_id": reply["update_id"]})
        else:
            self.http.presigned_post(upload["url"], upload.get("fields", {}), source.read_all())
        return reply

    def _multipart_job(self, path: tuple, update_id: str, source: Source, resume: ResumeFile) -> MultipartUpload:
        return MultipartUpload(self.http, source, (*path, update_id, "parts"), (*path, update_id, "complete"),
                               resume, self.upload_workers)

    def _resume_path(self) -> Path | None:
        """Next to the registration: `<registration>.upload.json` (None: progress in memory only)."""
        if self.resume_file is not None:
            return Path(self.resume_file)
        reg = self.registration
        return reg.path.with_name(reg.path.name.removesuffix(".json") + ".upload.json") if reg and reg.path else None

    def wait_for_update(self, round: int, timeout: float = 600.0) -> Json:
        """Poll the round until this client's update is validated; return its entry.

        Polls on the SDK's own short backoff: the round's Retry-After says when the *round*
        may change, while validating one update takes about a second.
        """

        def check() -> Json | None:
            entry = self._own_update(self.round(round))
            status = entry.get("status") if entry else None
            if entry is not None and status in ("REJECTED", "LATE", "FAILED"):
                raise UpdateRejected(round, str(status), entry.get("reason"), entry)
            return entry if status in ("ACCEPTED", "APPLIED") else None

        return self.waiter.until(check, timeout, f"the update for round {round} to be validated", obey_hint=False)

    def _own_update(self, round_body: Json) -> Json | None:
        updates = round_body.get("updates") or []
        if self.client_id is not None:
            updates = [u for u in updates if u.get("client_id") == self.client_id]
        return updates[-1] if updates else None

    def round(self, round: int) -> Json:
        """The round object (a client sees only its own entries in `updates`)."""
        return self.http.call_json("GET", "experiments", self.experiment_id, "rounds", round)

    def wait_for_round(self, round: int, timeout: float = 3600.0) -> Json:
        """Poll until `round` is PUBLISHED and return it; RoundFailed if it FAILED.

        Every ~30 s it also looks at the experiment's status, so a stopped experiment raises
        ExperimentEnded instead of leaving the caller waiting for the full timeout.
        """
        next_peek = self.clock() + 30.0
        deadline = self.clock() + timeout

        def check() -> Json | None:
            nonlocal next_peek
            body = self.round(round)
            if body.get("state") == "PUBLISHED":
                return body
            if body.get("state") == "FAILED":
                raise RoundFailed(round, body.get("reason"), body)
            if self.clock() >= next_peek:
                next_peek = self.clock() + 30.0
                self._raise_if_ended()
            if self.pointer() is not None:  # the round changes only when the pointer does
                self.wait_for_model_change(max(deadline - self.clock(), 0.0))
                next_peek = self.clock()
            return None

        return self.waiter.until(check, timeout, f"round {round} to be published")

    def pointer(self) -> PointerWatch | None:
        """The watch of the experiment's pointer object (None: the server gave no poll_url; poll the API)."""
        url = self.model.poll_url if self.model else None
        if url and (self._watch is None or self._watch.url != url):
            self._watch = PointerWatch(self.http, url)
        return self._watch if url else None

    def wait_for_model_change(self, limit: float | None = None) -> bool:
        """Wait until the pointer shows a status, round or model other than the last get_model's
        (or the API fallback time passes); False without a pointer (the caller polls the API)."""
        watch, seen = self.pointer(), self.model
        if watch is None or seen is None:
            return False

        def moved(body: Json) -> bool:
            round_moved = seen.mode == "sync" and body.get("current_round") != seen.round
            return body.get("status") != seen.status or body.get("model_sha256") != seen.sha256 or round_moved

        wait_for_change(self, watch, moved, 5 * self.poll_interval, limit)
        return True

    def _raise_if_ended(self) -> None:
        body = self.peek()
        if body.get("status") in ENDED:
            raise ExperimentEnded(self.experiment_id, body["status"])

    def peek(self) -> Json:
        """The model endpoint's JSON (status, round, sha256) without downloading anything.

        Also makes the next `get_model` revalidate in full: state has been looked at anew.
        """
        self._revalidate = True
        return self.http.call_json("GET", "experiments", self.experiment_id, "model")

    def invalidate_model(self) -> None:
        """Make the next `get_model` skip If-None-Match (the cached bytes stay usable).

        A 304 only says the model bytes are unchanged; after a pause or a conflict the round
        and status may have moved, so the next call must read them again.
        """
        self._revalidate = True

    def evaluate(self, round: int, num_examples: int, metrics: Mapping[str, Any]) -> Json:
        """Report metrics of the global model published after `round` on local data."""
        tensors.update_metadata(num_examples, round)  # same checks as an update's count
        body = {"num_examples": int(num_examples), "metrics": tensors.clean_metrics(metrics)}
        return self.http.call_json("POST", "experiments", self.experiment_id, "rounds", round, "evaluations", json=body)

    def run(
        self,
        train_fn: Callable[[tensors.Weights, dict[str, Any]], tuple[Any, int, Any]],
        rounds: int | None = None,
        *,
        round_timeout: float = 3600.0,
        update_timeout: float = 600.0,
    ) -> list[Json]:
        """Train until the experiment ends (or for `rounds` rounds); return one entry per round.

        `train_fn(weights, config) -> (weights, num_examples, metrics)` is the user's code.
        """
        return run_loop(self, train_fn, rounds, round_timeout, update_timeout)
