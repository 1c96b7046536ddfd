"""Model data as files under the state directory, one file per version.

A put writes a temporary file, fsyncs it, renames it to its version id and fsyncs the folder;
only then does one transaction record the version and its object-created event (the outbox).
A crash before that commit leaves at most an unreferenced file, never a half object, and a
version once recorded is never overwritten, so pinned reads (aggregation reads the version it
accepted) always find their bytes. `put_new` (manifests are written once) checks and records in
the same transaction; `copy` (a fork's version 0) hard-links the source version's file.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fma.adapters.memory.objects import ObjectNotFound
from fma.adapters.sqlite_fs.db import Database
from fma.adapters.sqlite_fs.grants import DOWNLOAD, PART, UPLOAD, GrantSigner
from fma.adapters.sqlite_fs.multipart import FileUploads
from fma.domain.multipart import Part

UPLOAD_PATH = "/objects"
#: where a part grant PUTs one part of a multipart upload (fma.local.objects)
PART_PATH = "/objects/parts"


class FileModelStore:
    """`public_url` is where clients reach local mode's gateway (it serves the grants)."""

    def __init__(self, db: Database, root: Path, signer: GrantSigner, public_url: str,
                 created: threading.Condition | None = None):
        self.db, self.signer, self.public_url = db, signer, public_url.rstrip("/")
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.created = created or threading.Condition()
        self.uploads = FileUploads(self.root, self.tmp)

    def _path(self, version_id: str) -> Path:
        return self.root / version_id[:2] / version_id

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        version_id = self._write(data)
        self._record(key, version_id, len(data), content_type, only_new=False)
        return version_id

    def delete_version(self, key: str, version_id: str | None) -> None:
        """Forget one version of `key` (all of them for None), then remove its file: a reader that
        resolved the version before the delete may find the file gone, as on S3."""
        with self.db.write() as tx:
            if version_id is None:
                ids = [r[0] for r in tx.conn.execute("SELECT version_id FROM objects WHERE key = ?", (key,))]
            else:
                ids = [r[0] for r in tx.conn.execute("SELECT version_id FROM objects WHERE key = ? AND version_id = ?",
                                                     (key, version_id))]
            tx.conn.executemany("DELETE FROM objects WHERE version_id = ?", [(i,) for i in ids])
        for vid in ids:
            self._path(vid).unlink(missing_ok=True)

    def put_new(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str | None:
        """Write `key` only if it has no version yet: the check and the record are one transaction,
        so of racing writers exactly one records its bytes (a loser removes its own file). The
        version written, None if `key` had one."""
        version_id = self._write(data)
        if self._record(key, version_id, len(data), content_type, only_new=True):
            return version_id
        self._path(version_id).unlink(missing_ok=True)
        return None

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str = "application/octet-stream") -> str:
        """The chunks written to a temporary file as they come, then the same fsync, rename and
        record as `put`: a stream that fails midway removes its temporary file and records nothing."""
        version_id = uuid.uuid4().hex
        temp = self.tmp / f"{version_id}.part"
        size = 0
        try:
            with open(temp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        final = self._path(version_id)
        final.parent.mkdir(exist_ok=True)
        os.rename(temp, final)
        _fsync_dir(final.parent)
        self._record(key, version_id, size, content_type, only_new=False)
        return version_id

    def copy(self, source_key: str, key: str, source_version_id: str | None = None) -> str:
        """A new version of `key` sharing the file of `source_key`'s newest version, or of exactly
        `source_version_id` (a hard link: version files are never rewritten, so sharing one is safe
        and costs no bytes)."""
        source_id, size = self._version(source_key, source_version_id)
        version_id = uuid.uuid4().hex
        final = self._path(version_id)
        final.parent.mkdir(exist_ok=True)
        try:
            os.link(self._path(source_id), final)
        except OSError:  # a file system without hard links: copy the bytes the crash-safe way
            version_id = self._write(self._path(source_id).read_bytes())
        else:
            _fsync_dir(final.parent)
        with self.db.read() as tx:
            content_type = tx.conn.execute("SELECT content_type FROM objects WHERE version_id = ?",
                                           (source_id,)).fetchone()[0]
        self._record(key, version_id, size, content_type, only_new=False)
        return version_id

    def _write(self, data: bytes) -> str:
        """A new version file, durable before anything refers to it: temp file, fsync, rename, fsync."""
        version_id = uuid.uuid4().hex
        final = self._path(version_id)
        final.parent.mkdir(exist_ok=True)
        temp = self.tmp / f"{version_id}.part"
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temp, final)
        _fsync_dir(final.parent)
        return version_id

    def _record(self, key: str, version_id: str, size: int, content_type: str, only_new: bool) -> bool:
        """Record the version and its object-created event in one transaction (False: `only_new`
        and the key already had a version; nothing recorded)."""
        with self.db.write() as tx:
            if only_new and tx.conn.execute("SELECT 1 FROM objects WHERE key = ? LIMIT 1", (key,)).fetchone():
                return False
            tx.conn.execute("INSERT INTO objects (key, version_id, size, content_type, created) VALUES (?, ?, ?, ?, ?)",
                            (key, version_id, size, content_type, time.time()))
            tx.conn.execute("INSERT INTO outbox (key) VALUES (?)", (key,))
        with self.created:
            self.created.notify_all()
        return True

    def _version(self, key: str, version_id: str | None) -> tuple[str, int]:
        with self.db.read() as tx:
            if version_id is None:
                found = tx.conn.execute("SELECT version_id, size FROM objects WHERE key = ? ORDER BY seq DESC LIMIT 1",
                                        (key,)).fetchone()
            else:
                found = tx.conn.execute("SELECT version_id, size FROM objects WHERE key = ? AND version_id = ?",
                                        (key, version_id)).fetchone()
        if found is None:
            raise ObjectNotFound(f"{key} (version {version_id})")
        return found[0], int(found[1])

    def get(self, key: str, version_id: str | None = None) -> bytes:
        return self.get_versioned(key, version_id)[0]

    def get_versioned(self, key: str, version_id: str | None = None) -> tuple[bytes, str | None]:
        vid, _ = self._version(key, version_id)
        return self._path(vid).read_bytes(), vid

    def get_range(self, key: str, start: int, end: int, version_id: str | None = None) -> bytes:
        if end <= start:
            return b""
        vid, _ = self._version(key, version_id)
        with open(self._path(vid), "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        if len(data) != end - start:
            raise ValueError(f"short read of {key}: {len(data)} of {end - start} bytes")
        return data

    def open_version(self, key: str, version_id: str | None = None) -> tuple[Path, int]:
        """The file of a version and its size (the gateway streams downloads from it)."""
        vid, size = self._version(key, version_id)
        return self._path(vid), size

    def size(self, key: str) -> int | None:
        try:
            return self._version(key, None)[1]
        except ObjectNotFound:
            return None

    def head(self, key: str, version_id: str | None = None) -> tuple[int, str | None] | None:
        try:
            vid, size = self._version(key, version_id)
        except ObjectNotFound:
            return None
        return size, vid

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def presigned_post(self, key: str, min_size: int, max_size: int, expires: int,
                       sha256: str | None = None) -> dict[str, Any]:
        """A multipart POST to the gateway for exactly `key`, a size in [min_size, max_size] and
        (given `sha256`) exactly those bytes."""
        grant = self.signer.sign(UPLOAD, key, expires, min_size, max_size, sha256)
        return {"url": f"{self.public_url}{UPLOAD_PATH}?grant={grant}", "fields": {"key": key}}

    def presigned_get(self, key: str, expires: int, version_id: str | None = None, *,
                      filename: str | None = None) -> str:
        """A download of `key`'s newest version, or of exactly `version_id` (a pinned update).
        `filename` is for another origin's browser; the gateway's grant is same-origin, where the
        dashboard's `download` attribute names the file."""
        grant = self.signer.sign(DOWNLOAD, key, expires, version_id=version_id)
        return f"{self.public_url}{UPLOAD_PATH}/{quote(key)}?grant={grant}"

    # -- multipart uploads (sqlite_fs.multipart keeps the parts) -------------------------------
    def multipart_create(self, key: str) -> str:
        return self.uploads.create(key)

    def multipart_part_url(self, key: str, upload_id: str, part_number: int, size: int, expires: int) -> str:
        """A PUT to the gateway of exactly that part and exactly `size` bytes."""
        grant = self.signer.sign(PART, key, expires, size, size, upload_id=upload_id, part_number=part_number)
        return f"{self.public_url}{PART_PATH}?grant={grant}"

    def multipart_put_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> str:
        """Store one part from bytes (the gateway streams through `uploads.put_part` instead)."""
        view = memoryview(data)
        offset = 0

        def read(n: int) -> bytes:
            nonlocal offset
            chunk = view[offset:offset + n].tobytes()
            offset += len(chunk)
            return chunk

        return self.uploads.put_part(key, upload_id, part_number, read, len(data))

    def multipart_put_part_stream(self, key: str, upload_id: str, part_number: int,
                                  read: Callable[[int], bytes], size: int) -> str:
        return self.uploads.put_part(key, upload_id, part_number, read, size)

    def multipart_parts(self, key: str, upload_id: str) -> list[Part] | None:
        return self.uploads.parts(key, upload_id)

    def multipart_complete(self, key: str, upload_id: str, parts: list[Part]) -> str:
        """The joined parts become a version (recorded with its object-created event)."""
        joined = self.uploads.join(key, upload_id, parts)
        version_id = uuid.uuid4().hex
        final = self._path(version_id)
        final.parent.mkdir(exist_ok=True)
        os.rename(joined, final)
        _fsync_dir(final.parent)
        self._record(key, version_id, final.stat().st_size, "application/octet-stream", only_new=False)
        return version_id

    def multipart_abort(self, key: str, upload_id: str | None = None) -> int:
        return self.uploads.abort(key, upload_id)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
