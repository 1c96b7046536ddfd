"""Contract: the model-data store (versions, ranges, sizes, grants) and object-created events."""

from __future__ import annotations

import pytest

from .contract_records import missing_object, race


def test_versions_are_kept_and_pinned_reads_return_them(connector):
    store = connector.store
    store.put("updates/e/00000001/c-1.safetensors", b"first version")
    _, v1 = store.get_versioned("updates/e/00000001/c-1.safetensors")
    store.put("updates/e/00000001/c-1.safetensors", b"second")
    data, v2 = store.get_versioned("updates/e/00000001/c-1.safetensors")
    assert data == b"second" and v1 and v2 and v1 != v2
    assert store.get("updates/e/00000001/c-1.safetensors", v1) == b"first version"
    assert store.get_versioned("updates/e/00000001/c-1.safetensors", v1) == (b"first version", v1)
    assert store.get_range("updates/e/00000001/c-1.safetensors", 6, 13, v1) == b"version"
    assert store.get_range("updates/e/00000001/c-1.safetensors", 1, 4) == b"eco"
    assert store.size("updates/e/00000001/c-1.safetensors") == 6


def test_ranges_are_exact_and_short_reads_raise(connector):
    store = connector.store
    store.put("models/e/00000000.safetensors", bytes(range(200)))
    assert store.get_range("models/e/00000000.safetensors", 0, 8) == bytes(range(8))
    assert store.get_range("models/e/00000000.safetensors", 5, 5) == b""
    with pytest.raises(ValueError):
        store.get_range("models/e/00000000.safetensors", 190, 210)


def test_missing_objects(connector):
    store = connector.store
    assert store.size("models/none/00000000.safetensors") is None
    assert store.exists("models/none/00000000.safetensors") is False
    with pytest.raises(missing_object()):
        store.get("models/none/00000000.safetensors")
    store.put("state/e/00000001.safetensors", b"x")
    assert store.exists("state/e/00000001.safetensors") is True


def test_grants_name_exactly_one_object(connector):
    store = connector.store
    post = store.presigned_post("updates/e/00000001/c-1.safetensors", 10, 10, 60)
    assert set(post) == {"url", "fields"} and isinstance(post["fields"], dict)
    assert "updates/e/00000001/c-1.safetensors" in post["fields"].values()
    url = store.presigned_get("models/e/00000001.safetensors", 60)
    assert "models/e/00000001.safetensors" in url.replace("%2F", "/")


def test_created_objects_are_announced_until_acknowledged(connector):
    if connector.events is None:
        pytest.skip("connector has no object-created events")
    events, store = connector.events, connector.store
    store.put("updates/e/00000001/c-1.safetensors", b"x")
    store.put("models/e/00000000.safetensors", b"y")
    got = []
    for _ in range(5):
        got += events.receive(10, wait_seconds=1)
        if len(got) >= 2:
            break
    assert sorted(e.key for e in got) == ["models/e/00000000.safetensors", "updates/e/00000001/c-1.safetensors"]
    events.acknowledge([e.event_id for e in got])
    assert events.receive(10, wait_seconds=0) == []


def test_put_new_writes_once_and_racing_writers_have_one_winner(connector):
    store = connector.store
    key = "models/e/00000001.manifest.json"
    written = store.put_new(key, b'{"first": 1}', content_type="application/json")
    _, first_version = store.get_versioned(key)
    assert isinstance(written, str) and written == first_version
    assert store.put_new(key, b'{"second": 2}', content_type="application/json") is None
    assert store.get_versioned(key) == (b'{"first": 1}', first_version)
    raced = "models/e/00000002.manifest.json"
    results = race(lambda i: store.put_new(raced, f'{{"writer": {i}}}'.encode()))
    winners = [i for i, version in enumerate(results) if version is not None]
    assert len(winners) == 1
    assert store.get_versioned(raced) == (f'{{"writer": {winners[0]}}}'.encode(), results[winners[0]])


def test_put_new_returns_the_version_a_later_write_does_not_change(connector):
    """The version put_new hands back names its own bytes even once the key has newer versions:
    what a losing publish deletes is exactly what it wrote (services/unpublished)."""
    store = connector.store
    key = "models/e/00000003.manifest.json"
    mine = store.put_new(key, b"mine")
    store.put(key, b"a later version")
    assert store.get(key, mine) == b"mine"
    store.delete_version(key, mine)
    assert store.get(key) == b"a later version"


def test_copy_makes_a_new_version_with_the_newest_source_bytes(connector):
    store = connector.store
    store.put("models/p/00000002.safetensors", b"old")
    store.put("models/p/00000002.safetensors", b"parent round two")
    store.put("models/f/00000000.safetensors", b"something earlier")
    _, before = store.get_versioned("models/f/00000000.safetensors")
    store.copy("models/p/00000002.safetensors", "models/f/00000000.safetensors")
    data, after = store.get_versioned("models/f/00000000.safetensors")
    assert data == b"parent round two" and after != before
    assert store.get("models/f/00000000.safetensors", before) == b"something earlier"
    assert store.size("models/f/00000000.safetensors") == len(b"parent round two")
    assert store.get("models/p/00000002.safetensors") == b"parent round two"
    with pytest.raises(missing_object()):
        store.copy("models/none/00000001.safetensors", "models/g/00000000.safetensors")
    assert store.exists("models/g/00000000.safetensors") is False


def test_head_names_the_newest_version_and_pins_ranged_reads_to_it(connector):
    store = connector.store
    key = "updates/e/00000001/c-2.safetensors"
    assert store.head(key) is None
    store.put(key, b"first version")
    size, version = store.head(key)
    store.put(key, b"second")
    assert size == 13 and version and store.get_range(key, 0, size, version) == b"first version"
    assert store.head(key)[0] == 6 and store.head(key)[1] != version


def test_put_returns_its_version_and_head_and_copy_take_a_pinned_one(connector):
    store = connector.store
    key = "models/e/00000000.safetensors"
    v1, v2 = store.put(key, b"validated"), store.put(key, b"written-over")
    assert v1 and v2 and v1 != v2
    assert store.head(key) == (12, v2) and store.head(key, v1) == (9, v1)
    copied = store.copy(key, "models/f/00000000.safetensors", v1)
    assert copied and store.get_versioned("models/f/00000000.safetensors") == (b"validated", copied)


def test_delete_version_removes_exactly_that_version(connector):
    store = connector.store
    key = "models/e/00000002.safetensors"
    v1 = store.put(key, b"winner")
    v2 = store.put(key, b"loser")
    store.delete_version(key, v2)
    assert store.get_versioned(key) == (b"winner", v1) and store.head(key) == (6, v1)
    with pytest.raises(missing_object()):
        store.get(key, v2)
    store.delete_version(key, v2)  # gone already: nothing happens
    store.delete_version(key, v1)
    assert store.head(key) is None and store.exists(key) is False
