"""The gateway's multipart parser: what requests sends parses; anything else is a FormError."""

from __future__ import annotations

import contextlib

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from fma.local.multipart import FormError, parse_form


def encoded(fields: dict[str, str], data: bytes) -> tuple[str, bytes]:
    req = requests.Request("POST", "http://x/", data=fields, files={"file": ("f", data)}).prepare()
    return req.headers["Content-Type"], req.body


def test_a_form_from_requests_parses():
    ctype, body = encoded({"key": "updates/a/00000001/c.safetensors"}, b"\r\n--\x00binary")
    assert parse_form(ctype, body) == {"key": b"updates/a/00000001/c.safetensors", "file": b"\r\n--\x00binary"}


@pytest.mark.parametrize("ctype", [None, "text/plain", "multipart/form-data", "multipart/form-data; boundary="])
def test_a_missing_boundary_is_refused(ctype):
    with pytest.raises(FormError):
        parse_form(ctype, b"")


def test_repeated_fields_are_refused():
    ctype, body = encoded({"key": "a"}, b"x")
    boundary = ctype.split("boundary=")[1].encode()
    part = body.split(b"--" + boundary)[1]
    with pytest.raises(FormError):
        parse_form(ctype, b"--" + boundary + part + b"--" + boundary + part + b"--" + boundary + b"--\r\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bodies_raise_nothing_but_form_error(body):
    with contextlib.suppress(FormError):
        parse_form("multipart/form-data; boundary=xyz", b"--xyz\r\n" + body)
