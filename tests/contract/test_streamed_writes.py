"""Contract: `ModelStore.put_stream`, the streamed write of models and state (issue 14).

A streamed write is a version like `put`'s, or nothing at all: a stream that fails midway
leaves the key's previous version current, and on S3 no multipart upload (nor its parts)
behind it.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from fma.domain.codec import encode, encode_stream

KEY = "models/e/00000002.safetensors"
MiB = 1 << 20


class StreamBroke(RuntimeError):
    pass


def chunks_of(data: bytes, size: int):
    for a in range(0, len(data), size):
        yield data[a : a + size]


def breaking(data: bytes, size: int, after: int):
    """The chunks of `data`, failing once `after` bytes were handed out (a crash mid-stream)."""
    sent = 0
    for chunk in chunks_of(data, size):
        if sent >= after:
            raise StreamBroke("the encoder died")
        sent += len(chunk)
        yield chunk


def small_parts(connector) -> None:
    """On S3, parts of S3's minimum (5 MiB) so that a test of a few MiB spans several parts."""
    if connector.name == "aws":
        connector.store.stream_part_bytes = 5 * MiB


def uploads_in_flight(connector) -> list:
    if connector.name != "aws":
        return []
    store = connector.store
    return store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


def test_a_streamed_write_is_a_new_version_with_exactly_the_streamed_bytes(connector):
    """Given a previous version, when 12 MiB are streamed in 1 MiB chunks (3 parts on S3), then
    the newest version is those bytes, the previous one is still readable, and nothing is in flight."""
    store = connector.store
    small_parts(connector)
    v1 = store.put(KEY, b"previous")
    data = os.urandom(12 * MiB + 123)
    v2 = store.put_stream(KEY, chunks_of(data, MiB))
    got, newest = store.get_versioned(KEY)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest() and newest == v2
    assert store.head(KEY) == (len(data), v2)
    assert store.get_range(KEY, 5 * MiB - 3, 5 * MiB + 3) == data[5 * MiB - 3 : 5 * MiB + 3]
    if v1 is not None:
        assert store.get(KEY, v1) == b"previous"
    assert uploads_in_flight(connector) == []


def test_a_stream_smaller_than_a_part_and_an_empty_stream_are_written_whole(connector):
    store = connector.store
    store.put_stream(KEY, iter([b"ab", b"", b"cd"]))
    assert store.get(KEY) == b"abcd"
    store.put_stream("state/e/00000002.safetensors", iter([]))
    assert store.get("state/e/00000002.safetensors") == b""
    assert uploads_in_flight(connector) == []


def test_a_stream_failing_midway_leaves_the_previous_version_current_and_no_upload(connector):
    """Given model version v1, when a stream of 12 MiB fails after 11 MiB (two parts already sent
    on S3), then the error is raised, v1 is still the newest version with its bytes, no other
    version exists, and no multipart upload or part is left."""
    store = connector.store
    small_parts(connector)
    v1 = store.put(KEY, b"previous model")
    data = os.urandom(12 * MiB)
    with pytest.raises(StreamBroke):
        store.put_stream(KEY, breaking(data, MiB, after=11 * MiB))
    assert store.get_versioned(KEY) == (b"previous model", v1)
    assert store.head(KEY) == (len(b"previous model"), v1)
    assert uploads_in_flight(connector) == []
    if connector.name == "aws":
        versions = store.client.list_object_versions(Bucket=store.bucket, Prefix=KEY).get("Versions", [])
        assert [v["VersionId"] for v in versions] == [v1]
    if connector.name == "sqlite_fs":
        assert list(store.tmp.iterdir()) == []


def test_a_failed_stream_of_a_new_key_leaves_no_object(connector):
    store = connector.store
    small_parts(connector)
    with pytest.raises(StreamBroke):
        store.put_stream(KEY, breaking(os.urandom(7 * MiB), MiB, after=6 * MiB))
    assert store.head(KEY) is None and store.exists(KEY) is False
    assert uploads_in_flight(connector) == []


def test_the_streamed_encoding_is_stored_as_encode_would_put_it(connector):
    """The encoder's stream through put_stream stores `encode`'s bytes (the model the single
    and fanout plans publish)."""
    import numpy as np

    store = connector.store
    small_parts(connector)
    tensors = {"b/kernel": np.arange(6 * MiB // 4, dtype=np.float32).reshape(-1, 8), "a/bias": np.ones(3)}
    meta = {"fma.round": "2", "fma.experiment": "e"}
    store.put_stream(KEY, encode_stream(tensors, meta, chunk_bytes=MiB))
    assert store.get(KEY) == encode(tensors, meta)
