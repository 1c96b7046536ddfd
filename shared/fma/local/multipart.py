"""A strict, bounded multipart/form-data parser for the gateway's upload route (the body is
untrusted: anything malformed is a FormError, never another exception)."""

from __future__ import annotations

import re

BOUNDARY = re.compile(r'^multipart/form-data\s*;\s*boundary="?([0-9A-Za-z\'()+_,\-./:=? ]{1,70})"?\s*$', re.I)
NAME = re.compile(rb'\bname="([^"\r\n]{1,200})"')
MAX_PARTS = 20
MAX_HEAD = 8 << 10


class FormError(ValueError):
    """The body is not a well-formed multipart form."""


def parse_form(content_type: str | None, body: bytes) -> dict[str, bytes]:
    """Field name -> content; a repeated name or more than MAX_PARTS parts is refused."""
    m = BOUNDARY.match(content_type or "")
    if not m:
        raise FormError("Content-Type must be multipart/form-data with a boundary")
    delimiter = b"--" + m.group(1).strip().encode()
    chunks = body.split(delimiter)
    if len(chunks) < 3 or chunks[0] not in (b"", b"\r\n") or not chunks[-1].startswith(b"--"):
        raise FormError("the form is not delimited by its boundary")
    if len(chunks) - 2 > MAX_PARTS:
        raise FormError(f"more than {MAX_PARTS} form parts")
    fields: dict[str, bytes] = {}
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            raise FormError("a form part is not framed by CRLF")
        head, sep, content = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep or len(head) > MAX_HEAD:
            raise FormError("a form part has no headers")
        found = NAME.search(head)
        if not found:
            raise FormError("a form part has no name")
        try:
            name = found.group(1).decode("utf-8")
        except UnicodeDecodeError:
            raise FormError("a form part name is not UTF-8") from None
        if name in fields:
            raise FormError(f"form field {name!r} is repeated")
        fields[name] = content
    return fields
