"""The developer's (and admin's) side: create and steer experiments, read results."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from fma_client import tensors
from fma_client._http import DEFAULT_TIMEOUT, RetryPolicy, TimeoutSpec, Transport
from fma_client._multipart import MultipartUpload, ResumeFile, Source
from fma_client._wait import Waiter
from fma_client.errors import ExperimentFailed, IntegrityError, PayloadTooLarge

Json = dict[str, Any]

#: Bodies up to this size go through the API (`PUT`); larger ones straight to S3 (presigned
#: POST). Below API Gateway's 10 MB payload limit with room for base64 in local mode.
DIRECT_UPLOAD_LIMIT = 4 * 1024 * 1024


def strategy_spec(strategy: str | Mapping[str, Any]) -> Json:
    """`"fedavg"` -> `{"name": "fedavg", "params": {}}`; a dict passes through with params."""
    if isinstance(strategy, str):
        return {"name": strategy, "params": {}}
    if "name" not in strategy:
        raise ValueError("strategy needs a 'name'")
    return {"name": strategy["name"], "params": dict(strategy.get("params") or {})}


class Developer:
    """A developer, analyst or admin token speaking to the FMA API.

    `url` is the server root (`http://127.0.0.1:8080`); a trailing `/v1` is accepted too.

    Example::

        dev = Developer("http://127.0.0.1:8080", token)
        exp = dev.create_experiment("digits", weights, rounds={"min_updates": 4, "total_rounds": 5})
        enroll = dev.enrollment_token(exp["id"])["token"]
    """

    def __init__(
        self,
        url: str,
        token: str,
        session: requests.Session | None = None,
        timeout: TimeoutSpec = DEFAULT_TIMEOUT,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        direct_upload_limit: int = DIRECT_UPLOAD_LIMIT,
    ) -> None:
        self.http = Transport(url, token, session=session, timeout=timeout, retry=retry, sleep=sleep, clock=clock,
                              rng=rng)  # fmt: skip
        self.waiter = Waiter(sleep=sleep, clock=clock, hint=lambda: self.http.poll_hint, rng=self.http.rng)
        self.direct_upload_limit = direct_upload_limit

    # -- experiments -------------------------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        initial_weights: Mapping[str, Any] | bytes,
        strategy: str | Mapping[str, Any] = "fedavg",
        rounds: Mapping[str, Any] | None = None,
        client_config: Mapping[str, Any] | None = None,
        max_update_bytes: int | None = None,
        wait: bool = True,
        timeout: float = 120.0,
        aggregation: Mapping[str, Any] | None = None,
    ) -> Json:
        """Create an experiment, upload its initial model and (if `wait`) wait until RUNNING.

        `initial_weights` is a dict of arrays or ready safetensors bytes. The server validates
        the model asynchronously, so without `wait` the experiment is still PENDING_MODEL.
        `aggregation` ({"plan": "auto" | "single" | "fanout", "partition_updates", "shard_bytes"})
        chooses where rounds aggregate; the plan never changes the bytes (docs/scale.md).
        Raises ExperimentFailed if the server refuses the model, Timeout after `timeout` s.
        """
        body: Json = {"name": name, "strategy": strategy_spec(strategy), "rounds": dict(rounds or {})}
        if client_config is not None:
            body["client_config"] = dict(client_config)
        if max_update_bytes is not None:
            body["max_update_bytes"] = max_update_bytes
        if aggregation is not None:
            body["aggregation"] = dict(aggregation)
        data = initial_weights if isinstance(initial_weights, bytes) else tensors.encode(initial_weights)
        if len(data) > self.direct_upload_limit:  # declared: a large model may get a multipart plan
            body["initial_model"] = {"size": len(data), "sha256": tensors.sha256_hex(data)}
        created = self.http.call_json("POST", "experiments", json=body)
        experiment: Json = created["experiment"]
        self._upload_model(experiment["id"], created["upload"], data)
        if not wait:
            return experiment
        return self.wait_until_running(experiment["id"], timeout)

    def _upload_model(self, experiment_id: str, upload: Json, data: bytes) -> None:
        """Through the API when small; straight to S3 when large or when the API says 413."""
        if len(data) <= self.direct_upload_limit:
            try:
                self.http.call("PUT", "experiments", experiment_id, "model", data=data)
                return
            except PayloadTooLarge:
                pass
        if "multipart" in upload:  # parts concurrently, then the API completes (fma_client._multipart)
            path = ("experiments", experiment_id, "model")
            job = MultipartUpload(self.http, Source(data=data), (*path, "parts"), (*path, "complete"), ResumeFile(None))
            job.run(upload["multipart"], {})
            return
        self.http.presigned_post(upload["url"], upload.get("fields", {}), data)

    def wait_until_running(self, experiment_id: str, timeout: float = 120.0) -> Json:
        """Poll until the experiment leaves PENDING_MODEL; FAILED raises ExperimentFailed."""

        def check() -> Json | None:
            experiment = self.experiment(experiment_id)
            if experiment["status"] == "FAILED":
                raise ExperimentFailed(experiment)
            return None if experiment["status"] == "PENDING_MODEL" else experiment

        return self.waiter.until(check, timeout, f"experiment {experiment_id} to start RUNNING")

    def experiment(self, experiment_id: str) -> Json:
        return self.http.call_json("GET", "experiments", experiment_id)

    def experiments(self, page_size: int = 100) -> list[Json]:
        """Every experiment visible to this token, following the cursor across pages."""
        return list(self.http.pages("experiments", "experiments", limit=page_size))

    def pause(self, experiment_id: str) -> Json:
        """Stop opening rounds; clients wait (their SDK retries) until `resume`."""
        return self._set_status(experiment_id, "PAUSED")

    def resume(self, experiment_id: str) -> Json:
        return self._set_status(experiment_id, "RUNNING")

    def stop(self, experiment_id: str) -> Json:
        """End the experiment for good; clients' `run` loops return."""
        return self._set_status(experiment_id, "STOPPED")

    def _set_status(self, experiment_id: str, status: str) -> Json:
        return self.http.call_json("PATCH", "experiments", experiment_id, json={"status": status})

    # -- tokens ------------------------------------------------------------------------------

    def enrollment_token(
        self, experiment_id: str, expires_in_seconds: int = 86400, max_uses: int | None = None
    ) -> Json:
        """`{"token", "expires_at", "max_uses"}`: hand `token` to the clients that may join."""
        body = {"expires_in_seconds": expires_in_seconds, "max_uses": max_uses}
        return self.http.call_json("POST", "experiments", experiment_id, "enrollment-tokens", json=body)

    def create_token(self, role: str, name: str | None = None, expires_in_seconds: int | None = None) -> Json:
        """Admin only: mint a `developer` or `analyst` token (`{"token", "role", "expires_at"}`)."""
        body: Json = {"role": role}
        if name is not None:
            body["name"] = name
        if expires_in_seconds is not None:
            body["expires_in_seconds"] = expires_in_seconds
        return self.http.call_json("POST", "tokens", json=body)

    # -- rounds and models -------------------------------------------------------------------

    def rounds(self, experiment_id: str, page_size: int = 100) -> list[Json]:
        """Every round of the experiment (states, counts, metrics, timings), all pages."""
        return list(self.http.pages("rounds", "experiments", experiment_id, "rounds", limit=page_size))

    def round(self, experiment_id: str, round: int) -> Json:
        return self.http.call_json("GET", "experiments", experiment_id, "rounds", round)

    def download_model(self, experiment_id: str, round: int) -> tensors.Weights:
        """The global model published after `round` (0 = initial), checked against its sha256."""
        info = self.http.call_json("GET", "experiments", experiment_id, "models", round)
        data = self.http.download(info["url"])
        if tensors.sha256_hex(data) != info["sha256"]:
            raise IntegrityError(f"model {experiment_id}/{round}: sha256 mismatch after download")
        return tensors.decode(data)
