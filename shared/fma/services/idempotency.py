"""Idempotency-Key on creating POSTs: a retried request gets the first response, and nothing is
created twice.

A request with `Idempotency-Key: K` first claims the record `sha256(principal, K)` (a
conditional put: one claimant wins); it runs only if it won, and its 2xx response is saved
against the request's fingerprint (method, path and canonical JSON body). A retry with the same
key and body replays that response (status and body); another body, path or method under the
same key is 422 `IDEMPOTENCY_KEY_REUSED`; a retry while the first is still running is 409
`IDEMPOTENCY_IN_PROGRESS` (retry shortly). A refused request (4xx) or a crash releases the claim
(a crash: when its lock expires), so the retry runs again. Records expire after a day (TTL).

Saved responses can hold a token shown once (registering a client returns its token), and
tokens are stored only as hashes: so the saved body is encrypted with a key derived from the
Idempotency-Key itself, which the table never holds (HMAC-SHA256 in counter mode plus an
HMAC tag, standard library only). Who can read the table cannot read the responses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from fma.domain import strict_json
from fma.domain.auth import Principal
from fma.domain.errors import Conflict, InvalidInput, Unprocessable
from fma.services.deps import Deps

KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces (a UUID is what the SDK sends)
TTL_SECONDS = 86400
LOCK_SECONDS = 60  # longer than the API function's timeout


@dataclass(frozen=True)
class Claim:
    """A won claim (`replay` None: run the request) or a response to replay."""

    record_id: str
    secret: bytes
    replay: tuple[int, str] | None = None


def fingerprint(method: str, path: str, body: bytes) -> str:
    """The request's identity under one key: JSON bodies compare by content, not by spacing."""
    try:
        canonical = json.dumps(strict_json.loads(body), sort_keys=True, separators=(",", ":")).encode() \
            if body.strip() else b""
    except strict_json.JsonRejected:
        canonical = body
    return hashlib.sha256(method.encode() + b"\n" + path.encode("utf-8", "replace") + b"\n" + canonical).hexdigest()


def begin(deps: Deps, caller: Principal, key: str, method: str, path: str, body: bytes) -> Claim:
    if not KEY.fullmatch(key):
        raise InvalidInput("Idempotency-Key must be 1 to 255 printable ASCII characters",
                           code="INVALID_IDEMPOTENCY_KEY", details={"header": "Idempotency-Key"})
    record_id = hashlib.sha256(f"{caller.principal_id}\n{key}".encode()).hexdigest()
    secret = hmac.new(key.encode(), b"fma-idempotency-v1\n" + caller.principal_id.encode(), "sha256").digest()
    fp = fingerprint(method, path, body)
    existing = deps.repo.claim_idempotency(record_id, fp, deps.clock(), LOCK_SECONDS, TTL_SECONDS)
    if existing is None:
        return Claim(record_id, secret)
    if existing.fingerprint != fp:
        raise Unprocessable("this Idempotency-Key was used for another request; use a new key per request",
                            code="IDEMPOTENCY_KEY_REUSED", details={"header": "Idempotency-Key"})
    if existing.state != "COMPLETED" or existing.status is None or existing.body is None:
        raise Conflict("a request with this Idempotency-Key is still running; retry shortly",
                       code="IDEMPOTENCY_IN_PROGRESS", details={"retry_after_seconds": 1})
    return Claim(record_id, secret, (existing.status, _open(secret, existing.body)))


def complete(deps: Deps, claim: Claim, status: int, body: str) -> None:
    deps.repo.complete_idempotency(claim.record_id, status, _seal(claim.secret, body.encode()))


def release(deps: Deps, claim: Claim) -> None:
    deps.repo.release_idempotency(claim.record_id)


def _keystream(secret: bytes, length: int) -> bytes:
    blocks = (hmac.new(secret, b"stream" + i.to_bytes(8, "big"), "sha256").digest() for i in range(length // 32 + 1))
    return b"".join(blocks)[:length]


def _seal(secret: bytes, plain: bytes) -> str:
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(secret, len(plain)), strict=True))
    tag = hmac.new(secret, b"tag" + cipher, "sha256").digest()
    return base64.b64encode(cipher + tag).decode()


def _open(secret: bytes, sealed: str) -> str:
    raw = base64.b64decode(sealed)
    cipher, tag = raw[:-32], raw[-32:]
    if not hmac.compare_digest(tag, hmac.new(secret, b"tag" + cipher, "sha256").digest()):
        raise Conflict("the saved response of this Idempotency-Key cannot be read", code="IDEMPOTENCY_CORRUPT")
    return bytes(a ^ b for a, b in zip(cipher, _keystream(secret, len(cipher)), strict=True)).decode()
