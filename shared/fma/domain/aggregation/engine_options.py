"""The engine's knobs and counters (apart from engine.py, which reads and folds)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

#: reads in flight that the chunk size of a small model is planned for: a constant, so that
#: the read concurrency (prefetch) never moves a slice boundary and hence never a rounding.
PLANNED_IN_FLIGHT = 4


@dataclass(frozen=True)
class EngineOptions:
    """Tuning knobs; none changes the result's bytes.

    chunk_bytes: size of one ranged read in streaming passes (S3 serves 8-16 MiB parts best);
        a read brings several arithmetic slices (planned apart from it), and an update's first
        read brings its header too, so an update up to chunk_bytes costs one GET.
    shard_bytes: one client's slice of a shard in coordinate-wise passes (one ranged read);
        a pass holds about two clients x shard blocks (three for Krum's float64 Gram) plus
        the output vector. Raise it (and prefetch) where memory allows, to cut S3 requests.
    prefetch: reads in flight ahead of the arithmetic (0 = sequential): the read concurrency
        per function. Streaming holds about (prefetch + 1) x chunk_bytes besides its
        accumulator; it never changes the bytes (slices are planned for PLANNED_IN_FLIGHT).
    portable: sums with separately rounded multiply and add instead of BLAS's fused axpy:
        ~1.3x slower, but the bytes no longer depend on the CPU, the BLAS build or the other
        options (re-run an AWS round on a laptop and get the same sha256).

    With the defaults, a re-run on the same machine type with the same options gives the
    same bytes; chunk_bytes and the BLAS kernel can move a float32 rounding.
    """

    chunk_bytes: int = 16 << 20
    shard_bytes: int = 512 << 10
    prefetch: int = 3
    portable: bool = False


@dataclass
class Stats:
    """Seconds per phase and bytes read; `fetch` is summed over the download threads."""

    fetch: float = 0.0
    wait: float = 0.0
    decode: float = 0.0
    compute: float = 0.0
    bytes_read: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_fetch(self, seconds: float, nbytes: int) -> None:
        with self.lock:
            self.fetch += seconds
            self.bytes_read += nbytes
            self.requests += 1

    def as_info(self) -> dict[str, Any]:
        timings = {k: round(getattr(self, k), 6) for k in ("fetch", "wait", "decode", "compute")}
        return {"timings": timings, "bytes_read": self.bytes_read, "requests": self.requests}
