"""Model data in dictionaries: every put is a new version; created events wait to be received."""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from fma.domain.backoff import jittered_backoff
from fma.domain.multipart import Part
from fma.services.ports import EVENT_RETRY_BASE_SECONDS, EVENT_RETRY_CAP_SECONDS, ObjectCreated


class ObjectNotFound(LookupError):
    """No such key (or no such version of it)."""


class MemoryEvents:
    """Object-created events, at least once: a received event comes back unless acknowledged
    within `visibility_seconds` (the way an SQS message does)."""

    def __init__(self, visibility_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random):
        self.lock = threading.Condition()
        self.pending: dict[str, tuple[str, float, int]] = {}  # id -> key, visible at, deliveries
        self.visibility, self.clock, self.rng = visibility_seconds, clock, rng

    def publish(self, key: str) -> None:
        with self.lock:
            self.pending[uuid.uuid4().hex] = (key, 0.0, 0)
            self.lock.notify_all()

    def receive(self, limit: int = 10, wait_seconds: float = 0.0) -> list[ObjectCreated]:
        with self.lock:
            self.lock.wait_for(lambda: self._visible(), timeout=wait_seconds)
            now = self.clock()
            out = [ObjectCreated(i, key, n + 1) for i, (key, at, n) in self.pending.items() if at <= now][:limit]
            for event in out:
                self.pending[event.event_id] = (event.key, now + self.visibility, event.deliveries)
            return out

    def _visible(self) -> bool:
        now = self.clock()
        return any(at <= now for _, at, _ in self.pending.values())

    def retry(self, event_ids: list[str]) -> None:
        """Each event visible again after 1, 2, 4 ... s (jittered, capped) over its deliveries."""
        with self.lock:
            now = self.clock()
            for event_id in event_ids:
                if event_id in self.pending:
                    key, _, deliveries = self.pending[event_id]
                    delay = jittered_backoff(max(1, deliveries), EVENT_RETRY_BASE_SECONDS, EVENT_RETRY_CAP_SECONDS,
                                             self.rng)
                    self.pending[event_id] = (key, now + delay, deliveries)
            self.lock.notify_all()

    def acknowledge(self, event_ids: list[str]) -> None:
        with self.lock:
            for event_id in event_ids:
                self.pending.pop(event_id, None)


class MemoryModelStore:
    """Versions kept per key; grants are opaque `memory://` URLs (nothing serves them)."""

    def __init__(self, events: MemoryEvents | None = None):
        self.lock = threading.Lock()
        self.objects: dict[str, list[tuple[str, bytes]]] = {}
        self.events = events
        self.uploads: dict[str, tuple[str, dict[int, bytes]]] = {}  # upload id -> key, parts

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        version_id = uuid.uuid4().hex
        with self.lock:
            self.objects.setdefault(key, []).append((version_id, bytes(data)))
        if self.events is not None:
            self.events.publish(key)
        return version_id

    def delete_version(self, key: str, version_id: str | None) -> None:
        with self.lock:
            kept = [v for v in self.objects.get(key, []) if version_id is not None and v[0] != version_id]
            if kept:
                self.objects[key] = kept
            else:
                self.objects.pop(key, None)

    def put_new(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str | None:
        """Write `key` only if it has no version yet (checked and written under the lock): the
        version written, None if it had one."""
        version_id = uuid.uuid4().hex
        with self.lock:
            if self.objects.get(key):
                return None
            self.objects[key] = [(version_id, bytes(data))]
        if self.events is not None:
            self.events.publish(key)
        return version_id

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str = "application/octet-stream") -> str:
        """Join the chunks, then store them as one version: a stream that fails stores nothing."""
        return self.put(key, b"".join(bytes(c) for c in chunks), content_type)

    def copy(self, source_key: str, key: str, source_version_id: str | None = None) -> str:
        """A new version of `key` with the bytes of `source_key` (newest, or `source_version_id`;
        ObjectNotFound if there is none)."""
        return self.put(key, self.get(source_key, source_version_id))

    def get(self, key: str, version_id: str | None = None) -> bytes:
        return self.get_versioned(key, version_id)[0]

    def get_versioned(self, key: str, version_id: str | None = None) -> tuple[bytes, str | None]:
        with self.lock:
            versions = self.objects.get(key, [])
            for vid, data in reversed(versions):
                if version_id is None or vid == version_id:
                    return data, vid
        raise ObjectNotFound(f"{key} (version {version_id})")

    def get_range(self, key: str, start: int, end: int, version_id: str | None = None) -> bytes:
        if end <= start:
            return b""
        data = self.get(key, version_id)[start:end]
        if len(data) != end - start:
            raise ValueError(f"short read of {key}: {len(data)} of {end - start} bytes")
        return data

    def size(self, key: str) -> int | None:
        with self.lock:
            versions = self.objects.get(key)
            return len(versions[-1][1]) if versions else None

    def head(self, key: str, version_id: str | None = None) -> tuple[int, str | None] | None:
        with self.lock:
            found = [(len(data), vid) for vid, data in self.objects.get(key, []) if version_id in (None, vid)]
            return found[-1] if found else None

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def presigned_post(self, key: str, min_size: int, max_size: int, expires: int,
                       sha256: str | None = None) -> dict[str, Any]:
        fields = {"key": key, "min_size": str(min_size), "max_size": str(max_size), "expires": str(expires)}
        return {"url": "memory://upload", "fields": fields | ({"sha256": sha256} if sha256 else {})}

    def presigned_get(self, key: str, expires: int, version_id: str | None = None, *,
                      filename: str | None = None) -> str:
        pinned = f"&version={quote(version_id)}" if version_id else ""
        return f"memory://{quote(key)}?expires={expires}{pinned}"

    # -- multipart uploads --------------------------------------------------------------------
    def multipart_create(self, key: str) -> str:
        upload_id = uuid.uuid4().hex
        with self.lock:
            self.uploads[upload_id] = (key, {})
        return upload_id

    def multipart_part_url(self, key: str, upload_id: str, part_number: int, size: int, expires: int) -> str:
        return f"memory://part/{quote(key)}?upload={upload_id}&part={part_number}&size={size}&expires={expires}"

    def multipart_put_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> str:
        """What a PUT of the part URL does (tests hold the bytes here): the part's ETag (MD5)."""
        with self.lock:
            found = self.uploads.get(upload_id)
            if found is None or found[0] != key:
                raise ObjectNotFound(f"no upload {upload_id} of {key}")
            found[1][part_number] = bytes(data)
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    def multipart_parts(self, key: str, upload_id: str) -> list[Part] | None:
        with self.lock:
            found = self.uploads.get(upload_id)
            if found is None or found[0] != key:
                return None
            return [Part(n, len(d), hashlib.md5(d, usedforsecurity=False).hexdigest())
                    for n, d in sorted(found[1].items())]

    def multipart_complete(self, key: str, upload_id: str, parts: list[Part]) -> str:
        with self.lock:
            found = self.uploads.get(upload_id)
            if found is None or found[0] != key:
                raise ObjectNotFound(f"no upload {upload_id} of {key}")
            data = b"".join(found[1][p.part_number] for p in parts)
            del self.uploads[upload_id]
        return self.put(key, data)

    def multipart_abort(self, key: str, upload_id: str | None = None) -> int:
        with self.lock:
            ids = [u for u, (k, _) in self.uploads.items() if k == key and upload_id in (None, u)]
            for u in ids:
                del self.uploads[u]
        return len(ids)
