"""HMAC-signed, expiring grants for exactly one object: what local mode gives clients instead of
a store endpoint. An upload grant also fixes the size range (the exact size for an update); the
gateway checks every field before it writes a byte, so a client holding a grant can reach
nothing but that one object.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

UPLOAD, DOWNLOAD = "put", "get"
#: one part of one multipart upload (exact size, upload id and part number bound)
PART = "part"
MAX_GRANT_CHARS = 4096


class GrantRefused(Exception):
    """The grant is malformed, forged, expired, or for another object, action or size."""


@dataclass(frozen=True)
class Grant:
    action: str
    key: str
    expires_at: int
    min_size: int | None = None
    max_size: int | None = None
    sha256: str | None = None
    #: a download of one version of the object (None: its newest version)
    version_id: str | None = None
    #: a part grant's multipart upload and part number
    upload_id: str | None = None
    part_number: int | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GrantSigner:
    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time):
        if len(secret) < 32:
            raise ValueError("a grant secret needs at least 32 bytes")
        self.secret, self.clock = secret, clock

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())

    def sign(self, action: str, key: str, expires_in: int, min_size: int | None = None,
             max_size: int | None = None, sha256: str | None = None, version_id: str | None = None,
             upload_id: str | None = None, part_number: int | None = None) -> str:
        body = {"a": action, "k": key, "e": int(self.clock()) + int(expires_in)}
        if action == PART:
            body.update(min=min_size, max=max_size, u=upload_id, n=part_number)
        elif action == UPLOAD:
            body.update(min=min_size, max=max_size)
            if sha256 is not None:
                body["s"] = sha256
        elif version_id is not None:
            body["v"] = version_id
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, action: str, key: str, size: int | None = None) -> Grant:
        """The grant if it allows `action` on `key` (with `size` bytes, for an upload) now."""
        grant = self._decode(token)
        if grant.action != action:
            raise GrantRefused(f"this grant is for {grant.action}, not {action}")
        if not hmac.compare_digest(grant.key.encode(), key.encode()):
            raise GrantRefused("this grant is for another object")
        if grant.expires_at < self.clock():
            raise GrantRefused("this grant has expired")
        if action == UPLOAD and (size is None or not grant.min_size <= size <= grant.max_size):
            raise GrantRefused(f"this grant allows {grant.min_size} to {grant.max_size} bytes, not {size}")
        return grant

    def verify_signature(self, token: str) -> Grant:
        """The grant if it is genuine, unexpired and for an upload (its key and size are checked later)."""
        grant = self._decode(token)
        if grant.action != UPLOAD:
            raise GrantRefused(f"this grant is for {grant.action}, not {UPLOAD}")
        if grant.expires_at < self.clock():
            raise GrantRefused("this grant has expired")
        return grant

    def verify_part(self, token: str) -> Grant:
        """The grant if it is a genuine, unexpired grant for one part of a multipart upload."""
        grant = self._decode(token)
        if grant.action != PART:
            raise GrantRefused(f"this grant is for {grant.action}, not {PART}")
        if grant.expires_at < self.clock():
            raise GrantRefused("this grant has expired")
        return grant

    def _decode(self, token: str) -> Grant:
        if not isinstance(token, str) or len(token) > MAX_GRANT_CHARS or token.count(".") != 1:
            raise GrantRefused("malformed grant")
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise GrantRefused("the grant's signature does not match")
        try:
            body = json.loads(_unb64(payload))
            grant = Grant(body["a"], body["k"], int(body["e"]), body.get("min"), body.get("max"), body.get("s"),
                          body.get("v"), body.get("u"), body.get("n"))
        except (ValueError, KeyError, TypeError):
            raise GrantRefused("malformed grant") from None
        if (not isinstance(grant.key, str) or grant.action not in (UPLOAD, DOWNLOAD, PART)
                or not isinstance(grant.sha256, str | None) or not isinstance(grant.version_id, str | None)):
            raise GrantRefused("malformed grant")
        if grant.action in (UPLOAD, PART) and not (type(grant.min_size) is int and type(grant.max_size) is int):
            raise GrantRefused("malformed grant")
        if grant.action == PART and not (isinstance(grant.upload_id, str) and type(grant.part_number) is int):
            raise GrantRefused("malformed grant")
        return grant
