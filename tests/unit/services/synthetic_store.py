"""A model store that serves huge objects it never holds: a header, then a repeating pattern.

The streaming-ingest test ingests a 2 GiB update through the real ingest service; the bytes are
generated per ranged read (the way S3 would stream them), so the test's own memory stays small
and whatever ingest allocates is what tracemalloc sees.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Synthetic:
    """`header` bytes, then `data_size` bytes of `pattern` repeated (from the data start)."""

    header: bytes
    data_size: int
    pattern: bytes

    @property
    def size(self) -> int:
        return len(self.header) + self.data_size

    def block(self, length: int) -> bytes:
        return self.pattern * (-(-length // len(self.pattern)) + 1)

    def sha256(self, step: int = 16 << 20) -> str:
        """What a client would declare: the hash of every byte, computed piece by piece."""
        h = hashlib.sha256(self.header)
        block = self.block(step)
        for first in range(0, self.data_size, step):
            h.update(memoryview(block)[: min(step, self.data_size - first)])
        return h.hexdigest()


def one_tensor(name: str, numel: int, pattern: np.ndarray, metadata: dict[str, str] | None = None) -> Synthetic:
    """A float32 safetensors object of one 1-d tensor of `numel` elements repeating `pattern`."""
    entry = {name: {"dtype": "F32", "shape": [numel], "data_offsets": [0, numel * 4]}}
    raw = json.dumps({"__metadata__": metadata, **entry} if metadata else entry).encode()
    raw += b" " * (-len(raw) % 8)
    return Synthetic(struct.pack("<Q", len(raw)) + raw, numel * 4, pattern.astype("<f4").tobytes())


class SyntheticStore:
    """Forwards to `inner`, except for keys added with `add`; records the largest read asked."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.synthetic: dict[str, tuple[Synthetic, bytes]] = {}
        self.largest_read = 0
        self.whole_reads: list[str] = []

    def add(self, key: str, obj: Synthetic, read_bytes: int = 16 << 20) -> None:
        self.synthetic[key] = (obj, obj.block(read_bytes + len(obj.pattern)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def head(self, key: str, version_id: str | None = None) -> tuple[int, str | None] | None:
        if key in self.synthetic:
            return self.synthetic[key][0].size, "v1"
        return self.inner.head(key, version_id)

    def size(self, key: str) -> int | None:
        found = self.head(key)
        return None if found is None else found[0]

    def get_range(self, key: str, start: int, end: int, version_id: str | None = None) -> bytes:
        if key not in self.synthetic:
            return self.inner.get_range(key, start, end, version_id)
        assert version_id == "v1", "ingest must pin the version it measured"
        self.largest_read = max(self.largest_read, end - start)
        obj, block = self.synthetic[key]
        if end > obj.size or start < 0:
            raise ValueError("short read")
        head = obj.header[start:end] if start < len(obj.header) else b""
        first = max(start, len(obj.header)) - len(obj.header)
        last = end - len(obj.header)
        if last <= first:
            return head
        rot = first % len(obj.pattern)
        body = block[rot : rot + last - first]
        return head + body if head else body

    def get(self, key: str, version_id: str | None = None) -> bytes:
        if key in self.synthetic:
            self.whole_reads.append(key)
            raise AssertionError(f"ingest read all of {key} at once")
        return self.inner.get(key, version_id)

    def get_versioned(self, key: str, version_id: str | None = None) -> tuple[bytes, str | None]:
        return self.get(key, version_id), version_id
