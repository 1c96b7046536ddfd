"""A tiny in-memory FMA server behind `responses`, enough for `Client.run` to train against.

Rounds seal at `quota` accepted updates and aggregate at once (weighted mean, as FedAvg), so a
single client drives the whole experiment. Knobs let a test inject a pause, a closed round or
a rejection.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np
import responses
from safetensors.numpy import save

from fma_client.tensors import decode as load  # BF16 too

from .conftest import API, EXP, S3

BASE = f"{API}/v1/experiments/{EXP}"


class FakeServer:
    def __init__(self, http: responses.RequestsMock, initial: dict[str, np.ndarray],
                 total_rounds: int = 2, quota: int = 1) -> None:  # fmt: skip
        self.models: dict[int, bytes] = {0: save(initial)}
        self.total_rounds, self.quota = total_rounds, quota
        self.status = "RUNNING"
        self.current = 1
        self.rounds: dict[int, dict[str, Any]] = {1: self._new_round(1)}
        self.paused_polls = 0  # the next N model requests see PAUSED
        self.close_next_put = False  # the next PUT finds the round sealed by another client
        self.reject_next: str | None = None  # the next update is REJECTED with this reason
        self.fail_ingest = 0  # the next N updates end FAILED (a server-side ingest fault)
        self.fail_next: tuple[int, str] | None = None  # the next PUT answers (status, code)
        self.publish_after_polls = 0  # accepted updates wait this many round polls
        self.pause_while_open = False  # and the experiment reads PAUSED meanwhile
        self.mode = "sync"  # "async": the model says so, and accepted updates publish on the next model poll
        self._pending: tuple[int, bytes, int] | None = None
        self.submitted: list[dict[str, Any]] = []
        http.add_callback(responses.GET, f"{BASE}/model", self.get_model)
        http.add_callback(responses.GET, re.compile(rf"{S3}/models/\d+"), self.download)
        http.add_callback(responses.PUT, re.compile(rf"{BASE}/rounds/\d+/updates"), self.put)
        http.add_callback(responses.GET, re.compile(rf"{BASE}/rounds/\d+"), self.get_round)

    @staticmethod
    def _new_round(n: int) -> dict[str, Any]:
        return {"round": n, "state": "OPEN", "accepted": 0, "rejected": 0, "late": 0,
                "min_updates": 1, "metrics": {}, "updates": []}  # fmt: skip

    def get_model(self, request):
        if self.mode == "async" and self._pending is not None:  # another client's update filled the buffer
            n, body, weight = self._pending
            self._pending = None
            self._publish(n, [(body, weight)])
        version = max(self.models)
        sha = hashlib.sha256(self.models[version]).hexdigest()
        paused = self.paused_polls > 0 or (self.pause_while_open and self._pending is not None)
        status = "PAUSED" if paused else self.status
        self.paused_polls = max(0, self.paused_polls - 1)
        if request.headers.get("If-None-Match") == f'"{sha}"':
            return 304, {"ETag": f'"{sha}"'}, ""
        body = {
            "round": self.current if status in ("RUNNING", "PAUSED") else None,
            "version": version, "sha256": sha, "url": f"{S3}/models/{version}",
            "client_config": {"lr": 0.5}, "status": status, "mode": self.mode,
        }  # fmt: skip
        return 200, {"ETag": f'"{sha}"'}, json.dumps(body)

    def download(self, request):
        return 200, {}, self.models[int(request.url.rsplit("/", 1)[1])]

    def put(self, request):
        n = int(request.url.split("/rounds/")[1].split("/")[0])
        if self.close_next_put:
            self.close_next_put = False
            self._publish(n, [(self.models[n - 1], 1)])
            return 409, {}, json.dumps({"error": {"code": "ROUND_CLOSED", "message": "sealed"}})
        if self.fail_next:
            (status, code), self.fail_next = self.fail_next, None
            if code == "EXPERIMENT_NOT_RUNNING":  # paused: the next model polls say so
                self.paused_polls = 2
            if status == 410:
                self.status = "STOPPED"
            return status, {}, json.dumps({"error": {"code": code, "message": code}})
        meta = json.loads(request.body[8 : 8 + int.from_bytes(request.body[:8], "little")])
        meta = meta["__metadata__"]
        entry = {"client_id": "c1", "status": "ACCEPTED", "reason": None,
                 "num_examples": int(meta["fma.num_examples"]),
                 "metrics": json.loads(meta.get("fma.metrics", "{}"))}  # fmt: skip
        self.submitted.append({"round": n, "meta": meta, "tensors": load(request.body)})
        if self.reject_next:
            entry.update(status="REJECTED", reason=self.reject_next)
        elif self.fail_ingest:
            self.fail_ingest -= 1
            entry.update(status="FAILED", reason="ingest fault")
        self.rounds[n]["updates"].append(entry)
        if entry["status"] == "ACCEPTED" and (self.publish_after_polls or self.mode == "async"):
            self._pending = (n, request.body, entry["num_examples"])
        elif entry["status"] == "ACCEPTED":
            self._publish(n, [(request.body, entry["num_examples"])])
        return 202, {}, json.dumps({"update_id": f"u{n}", "status": "UPLOADING"})

    def _publish(self, n: int, updates: list[tuple[bytes, int]]) -> None:
        total = sum(w for _, w in updates)
        decoded = [(load(b), w) for b, w in updates]
        model = {k: sum(t[k].astype(np.float64) * w for t, w in decoded) / total
                 for k in decoded[0][0]}  # fmt: skip
        dtypes = {k: v.dtype for k, v in decoded[0][0].items()}  # integer buffers: weighted mean, rounded
        self.models[n] = save({k: np.asarray(np.rint(v) if np.issubdtype(dtypes[k], np.integer) else v,
                                             dtype=dtypes[k]) for k, v in model.items()})  # fmt: skip
        self.rounds[n].update(state="PUBLISHED", metrics={"loss": 0.1 * n})
        for u in self.rounds[n]["updates"]:
            u["status"] = "APPLIED"
        if n >= self.total_rounds:
            self.status = "COMPLETED"
        else:
            self.current = n + 1
            self.rounds[n + 1] = self._new_round(n + 1)

    def get_round(self, request):
        n = int(request.url.rsplit("/", 1)[1])
        if self._pending and self._pending[0] == n:
            self.publish_after_polls -= 1
            if self.publish_after_polls <= 0:
                _, body, weight = self._pending
                self._pending = None
                self._publish(n, [(body, weight)])
        return 200, {}, json.dumps(self.rounds[n])
