"""Local mode's pointer route (`GET /pointers/...`, fma.local.objects.pointer_reply) takes a path
and an If-None-Match header a client controls: any of them gets 200, 304 or 404, never an
exception, and only a well-formed pointer path of an existing object is served."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from fma.adapters.memory import MemoryModelStore
from fma.local.objects import pointer_reply

KEY = "pointers/0123456789abcdef/" + "a" * 32 + ".json"
BODY = b'{"experiment_id":"0123456789abcdef"}'


def _store() -> MemoryModelStore:
    store = MemoryModelStore()
    store.put(KEY, BODY, "application/json")
    store.put("models/0123456789abcdef/00000000.safetensors", b"secret model bytes")
    return store


@settings(max_examples=300, deadline=None)
@given(path=st.one_of(st.text(max_size=200), st.just("/" + KEY), st.builds(lambda s: "/pointers/" + s, st.text())),
       tag=st.one_of(st.none(), st.text(max_size=100)))
def test_any_path_and_header_get_200_304_or_404_and_only_the_pointer_is_served(path, tag):
    status, _headers, body = pointer_reply(_store(), path, tag)
    assert status in (200, 304, 404)
    if status == 200:
        assert path == "/" + KEY and body == BODY
    if status == 304:
        assert tag is not None and f'"{hashlib.sha256(BODY).hexdigest()}"' in tag and body == b""
    if path != "/" + KEY:
        assert status == 404 and b"secret" not in body
