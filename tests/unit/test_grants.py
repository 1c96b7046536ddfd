"""HMAC-signed single-object grants: exactly one key, one action, an expiry and (uploads) a size."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fma.adapters.sqlite_fs.grants import DOWNLOAD, UPLOAD, GrantRefused, GrantSigner

KEY = "updates/e1/00000001/c-1.safetensors"


class Clock:
    now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def signer():
    return GrantSigner(b"k" * 32, Clock())


def test_upload_grant_allows_its_key_and_size_only(signer):
    grant = signer.sign(UPLOAD, KEY, 60, 100, 100)
    assert signer.verify(grant, UPLOAD, KEY, 100).key == KEY
    for key, size in ((KEY.replace("c-1", "c-2"), 100), (KEY, 99), (KEY, 101), (KEY, None)):
        with pytest.raises(GrantRefused):
            signer.verify(grant, UPLOAD, key, size)
    with pytest.raises(GrantRefused):
        signer.verify(grant, DOWNLOAD, KEY)


def test_grant_expires(signer):
    grant = signer.sign(DOWNLOAD, KEY, 60)
    signer.clock.now += 61
    with pytest.raises(GrantRefused, match="expired"):
        signer.verify(grant, DOWNLOAD, KEY)


def test_altered_or_foreign_grants_are_refused(signer):
    grant = signer.sign(UPLOAD, KEY, 60, 1, 10)
    payload, mac = grant.split(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    other = GrantSigner(b"x" * 32, signer.clock).sign(UPLOAD, KEY, 60, 1, 10)
    for bad in (f"{flipped}.{mac}", f"{payload}.{mac[:-1]}", other, "", "a.b.c", "." * 5000):
        with pytest.raises(GrantRefused):
            signer.verify(bad, UPLOAD, KEY, 5)


def test_secret_must_be_long():
    with pytest.raises(ValueError):
        GrantSigner(b"short")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from([UPLOAD, DOWNLOAD]), st.text(max_size=50),
       st.none() | st.integers(-5, 1 << 70))
def test_arbitrary_grants_raise_nothing_but_grant_refused(token, action, key, size):
    signer = GrantSigner(b"k" * 32)
    try:
        signer.verify(token, action, key, size)
    except GrantRefused:
        pass
    else:
        raise AssertionError("an unsigned string was accepted as a grant")
