"""Multipart uploads: parts PUT concurrently to their presigned URLs, progress kept on disk.

Why: an update above the server's multipart threshold (default 100 MiB, up to 50 GiB) cannot go
in one presigned POST (5 GB cap, no resume). The server answers `POST .../updates` with a plan
(upload id, part size, part URLs); this module PUTs the parts with a small thread pool, each
part read from its source by offset (memory: one part per worker, never the whole file), and
asks the server to complete. Progress (update id, upload id, finished parts) is written to a
small resume file after every part, so a process that is killed and started again asks the
server which parts S3 holds (`GET .../parts`) and sends only the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fma_client._registration import write_private_json
from fma_client.errors import Conflict, FmaError, NotFound

Json = dict[str, Any]
CHUNK = 1 << 20
DEFAULT_WORKERS = 4


class Source:
    """Bytes to upload: a file (read by offset) or bytes in memory."""

    def __init__(self, path: str | os.PathLike | None = None, data: bytes | None = None) -> None:
        if (path is None) == (data is None):
            raise ValueError("give a path or bytes")
        self.path, self.data = (Path(path) if path is not None else None), data
        self.size = self.path.stat().st_size if self.path is not None else len(data or b"")

    def read_at(self, offset: int, size: int) -> bytes:
        if self.data is not None:
            return self.data[offset:offset + size]
        with open(self.path, "rb") as f:  # type: ignore[arg-type]
            f.seek(offset)
            return f.read(size)

    def sha256(self) -> str:
        """Over the bytes in chunks (memory O(chunk) for a file)."""
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:  # type: ignore[arg-type]
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def read_all(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()  # type: ignore[union-attr]


class ResumeFile:
    """The progress of one upload in flight (atomic rewrites, 0600); None path: in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.lock = path, threading.Lock()

    def load(self, identity: Json) -> Json | None:
        """What an earlier run saved for this same upload (same target, size and sha256)."""
        if self.path is None:
            return None
        try:
            body = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return body if isinstance(body, dict) and body.get("identity") == identity else None

    def save(self, state: Json) -> None:
        if self.path is None:
            return
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private_json(self.path, state)

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class MultipartUpload:
    """One multipart upload against its API routes (`parts_path`, `complete_path`).

    `identity` names what is uploaded (target, size, sha256): a resume file of another upload
    is ignored. `state` is what the resume file holds: identity, update id, upload id, part
    size and count, and the finished parts with their ETags.
    """

    def __init__(self, http: Any, source: Source, parts_path: tuple, complete_path: tuple, resume: ResumeFile,
                 workers: int = DEFAULT_WORKERS) -> None:
        self.http, self.source, self.resume = http, source, resume
        self.parts_path, self.complete_path, self.workers = parts_path, complete_path, max(1, workers)
        self.done: dict[int, str] = {}
        self.state: Json = {}
        #: part PUTs this object sent (tests and logs: a resumed upload sends only missing parts)
        self.sent = 0

    def run(self, plan: Json, state: Json) -> None:
        """Upload what a fresh plan lists (and its further pages), then complete."""
        self.state = {**state, "upload_id": plan["upload_id"], "part_size": int(plan["part_size"]),
                      "part_count": int(plan["part_count"]), "done": {}}
        self.resume.save(self.state)
        self._send(plan["parts"])
        self._page_on(plan.get("next_part"))
        self._complete(int(plan["part_count"]))

    def resume_from(self, saved: Json) -> bool:
        """Continue an earlier run's upload: only the parts the server does not hold are sent.
        False if the server no longer has the upload (the caller starts anew)."""
        try:
            listing = self.http.call_json("GET", *self.parts_path)
        except (NotFound, Conflict) as exc:
            if getattr(exc, "code", None) == "MULTIPART_COMPLETED":
                self.resume.clear()
                return True
            return False
        self.done = {int(p["part_number"]): p["etag"] for p in listing["uploaded"]}
        self.state = {**saved, "upload_id": listing["upload_id"], "part_size": int(listing["part_size"]),
                      "part_count": int(listing["part_count"]), "done": {str(n): e for n, e in self.done.items()}}
        self.resume.save(self.state)
        self._send(listing["parts"])
        self._page_on(listing.get("next_part"))
        self._complete(int(listing["part_count"]))
        return True

    def _page_on(self, next_part: int | None) -> None:
        while next_part is not None:
            page = self.http.call_json("GET", *self.parts_path, params={"from": next_part})
            self._send(page["parts"])
            next_part = page.get("next_part")

    def _send(self, parts: Iterable[Json]) -> None:
        todo = [p for p in parts if int(p["part_number"]) not in self.done]
        if not todo:
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="fma-part") as pool:
            for future in [pool.submit(self._put, p) for p in todo]:
                future.result()  # the first failure propagates; finished parts stay recorded

    def _put(self, part: Json) -> None:
        number, size = int(part["part_number"]), int(part["size"])
        body = self.source.read_at((number - 1) * int(self.state["part_size"]), size)
        response = self.http.send("PUT", part["url"], ok=(200,), data=body,
                                  headers={"Content-Type": "application/octet-stream"})
        etag = response.headers.get("ETag")
        if not etag:
            raise FmaError(f"the upload of part {number} answered no ETag")
        with self.resume.lock:
            self.sent += 1
            self.done[number] = etag
            self.state["done"] = {str(n): e for n, e in self.done.items()}
        self.resume.save(self.state)

    def _complete(self, part_count: int) -> None:
        parts = [{"part_number": n, "etag": self.done[n]} for n in sorted(self.done)]
        if len(parts) != part_count:
            raise FmaError(f"{len(parts)} of {part_count} parts were uploaded")
        try:
            self.http.call_json("POST", *self.complete_path, json={"parts": parts})
        except Conflict as exc:
            if getattr(exc, "code", None) != "MULTIPART_COMPLETED":  # a lost answer to our own completion
                raise
        self.resume.clear()
