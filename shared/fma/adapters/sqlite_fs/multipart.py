"""Multipart uploads as folders of part files: what S3 keeps for an upload in flight.

`<objects>/multipart/<upload id>/key` names the object; each part is a file
`<part number:05d>.<md5>` (its ETag in its name, so one rename makes a part and its ETag
visible together; a part sent again replaces the older file). Completing renames the folder
first (exactly one of racing completions wins it), then streams the parts into one version
file in chunks (memory O(chunk) whatever the size) that the store records like any put.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from fma.adapters.memory.objects import ObjectNotFound
from fma.domain.multipart import Part

CHUNK = 1 << 20
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
PART_FILE = re.compile(r"^(\d{5})\.([0-9a-f]{32})$")


class FileUploads:
    """The multipart uploads under `root` (the store's objects folder); `tmp` is on the same file system."""

    def __init__(self, root: Path, tmp: Path):
        self.root, self.tmp = Path(root) / "multipart", tmp
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, key: str, upload_id: str) -> Path | None:
        """The upload's folder if `upload_id` is one (well formed) and it uploads `key`."""
        if not isinstance(upload_id, str) or not UPLOAD_ID.fullmatch(upload_id):
            return None
        folder = self.root / upload_id
        try:
            return folder if (folder / "key").read_text() == key else None
        except OSError:
            return None

    def create(self, key: str) -> str:
        upload_id = uuid.uuid4().hex
        temp = self.tmp / f"{upload_id}.upload"
        temp.mkdir()
        (temp / "key").write_text(key)
        os.rename(temp, self.root / upload_id)
        return upload_id

    def put_part(self, key: str, upload_id: str, part_number: int, read: Callable[[int], bytes], size: int) -> str:
        """Stream `size` bytes from `read` into the part's file: its ETag (MD5 hex)."""
        folder = self._dir(key, upload_id)
        if folder is None:
            raise ObjectNotFound(f"no upload {upload_id} of {key}")
        digest, temp = hashlib.md5(usedforsecurity=False), self.tmp / f"{uuid.uuid4().hex}.part"
        with open(temp, "wb") as out:
            left = size
            while left:
                chunk = read(min(CHUNK, left))
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                left -= len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if left:
            temp.unlink(missing_ok=True)
            raise ValueError(f"the part ended after {size - left} of {size} bytes")
        for old in folder.glob(f"{part_number:05d}.*"):
            old.unlink(missing_ok=True)
        etag = digest.hexdigest()
        try:
            os.rename(temp, folder / f"{part_number:05d}.{etag}")
        except OSError:  # completed or aborted meanwhile
            temp.unlink(missing_ok=True)
            raise ObjectNotFound(f"no upload {upload_id} of {key}") from None
        return etag

    def parts(self, key: str, upload_id: str) -> list[Part] | None:
        folder = self._dir(key, upload_id)
        if folder is None:
            return None
        found = []
        for path in folder.iterdir():
            if m := PART_FILE.fullmatch(path.name):
                try:
                    found.append(Part(int(m[1]), path.stat().st_size, m[2]))
                except FileNotFoundError:  # replaced meanwhile
                    continue
        return sorted(found, key=lambda p: p.part_number)

    def join(self, key: str, upload_id: str, parts: list[Part]) -> Path:
        """Claim the upload and stream its `parts` into one new file (the caller records it)."""
        folder = self._dir(key, upload_id)
        claimed = self.tmp / f"{upload_id}.completing"
        try:
            if folder is None:
                raise FileNotFoundError
            os.rename(folder, claimed)
        except OSError:
            raise ObjectNotFound(f"no upload {upload_id} of {key}") from None
        joined = self.tmp / f"{uuid.uuid4().hex}.joined"
        with open(joined, "wb") as out:
            for part in parts:
                with open(claimed / f"{part.part_number:05d}.{part.etag}", "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        shutil.rmtree(claimed, ignore_errors=True)
        return joined

    def abort(self, key: str, upload_id: str | None = None) -> int:
        if upload_id is not None:
            folders = [f for f in [self._dir(key, upload_id)] if f is not None]
        else:
            folders = [f for f in self.root.iterdir() if self._dir(key, f.name) is not None]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        return len(folders)
