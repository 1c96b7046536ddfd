"""Contract: multipart uploads in the model-data store (issue 13 item 4): parts are held per
upload and listed with their sizes and ETags, completing joins exactly the listed parts into a
new version and announces it like any write, an upload of another key is invisible, and an
aborted or completed upload is gone."""

from __future__ import annotations

import hashlib

import pytest

KEY = "updates/e/00000001/c-1.safetensors"
OTHER = "updates/e/00000001/c-2.safetensors"


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    """moto refuses parts under 5 MiB but the last; the contract is the same with 256 bytes."""
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 256)


def drain(connector) -> list[str]:
    if connector.events is None:
        return []
    got = connector.events.receive(10, wait_seconds=0.5)
    connector.events.acknowledge([e.event_id for e in got])
    return [e.key for e in got]


def test_parts_are_listed_and_completion_joins_them_into_a_version(connector):
    store = connector.store
    drain(connector)
    upload_id = store.multipart_create(KEY)
    chunks = [b"a" * 300, b"b" * 300, b"c" * 17]
    for n in (3, 1, 2):  # any order
        etag = store.multipart_put_part(KEY, upload_id, n, chunks[n - 1])
        assert etag.strip('"') == hashlib.md5(chunks[n - 1]).hexdigest()
    parts = store.multipart_parts(KEY, upload_id)
    assert [(p.part_number, p.size) for p in parts] == [(1, 300), (2, 300), (3, 17)]
    assert store.exists(KEY) is False  # nothing is an object before completion
    version = store.multipart_complete(KEY, upload_id, parts)
    data, got_version = store.get_versioned(KEY)
    assert data == b"".join(chunks) and got_version == version
    assert KEY in drain(connector)
    assert store.multipart_parts(KEY, upload_id) is None  # completed: gone


def test_a_part_sent_again_replaces_the_first(connector):
    store = connector.store
    upload_id = store.multipart_create(KEY)
    store.multipart_put_part(KEY, upload_id, 1, b"x" * 300)
    store.multipart_put_part(KEY, upload_id, 1, b"y" * 300)
    parts = store.multipart_parts(KEY, upload_id)
    assert [(p.part_number, p.etag.strip('"')) for p in parts] == [(1, hashlib.md5(b"y" * 300).hexdigest())]


def test_an_upload_is_invisible_under_another_key_and_unknown_ids_are_none(connector):
    store = connector.store
    upload_id = store.multipart_create(KEY)
    store.multipart_put_part(KEY, upload_id, 1, b"x" * 10)
    assert store.multipart_parts(OTHER, upload_id) is None
    assert store.multipart_parts(KEY, "0" * 32) is None
    assert store.multipart_parts(KEY, "../../etc") is None


def test_abort_frees_one_upload_or_every_upload_of_a_key(connector):
    store = connector.store
    first, second = store.multipart_create(KEY), store.multipart_create(KEY)
    other = store.multipart_create(OTHER)
    assert store.multipart_abort(KEY, first) == 1
    assert store.multipart_parts(KEY, first) is None and store.multipart_parts(KEY, second) == []
    assert store.multipart_abort(KEY) == 1
    assert store.multipart_parts(KEY, second) is None
    assert store.multipart_parts(OTHER, other) == []  # another key's upload is untouched
    assert store.exists(KEY) is False


def test_part_urls_name_one_part_of_one_upload(connector):
    store = connector.store
    upload_id = store.multipart_create(KEY)
    one, two = (store.multipart_part_url(KEY, upload_id, n, 300, 60) for n in (1, 2))
    assert one != two and all(isinstance(u, str) and u for u in (one, two))
