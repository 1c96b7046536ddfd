"""The gateway's object routes: the only way a local client reaches model data.

`POST /objects?grant=...` (multipart: `key`, then `file`) stores one object if the grant is an
upload grant for exactly that key and the file's exact size; `GET /objects/<key>?grant=...`
returns one object for a download grant of that key. Anything else is refused with 403 (or
400/413) before a byte is stored, so a client can never list, read or overwrite another object.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import unquote

from fma.adapters.sqlite_fs.grants import DOWNLOAD, PART, UPLOAD, GrantRefused, GrantSigner
from fma.domain.multipart import Part
from fma.local.multipart import FormError, parse_form
from fma.services.ports import ModelStore

FORM_OVERHEAD = 64 << 10  # multipart framing and the key field around the file
Reply = tuple[int, dict[str, str], bytes]


def _error(status: int, code: str, message: str) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    return status, {"Content-Type": "application/json"}, body


@dataclass
class ObjectRoutes:
    store: ModelStore
    signer: GrantSigner

    def upload(self, query: dict[str, str], headers: Any, read: Callable[[int], bytes]) -> Reply:
        try:
            grant = self.signer.verify_signature(query.get("grant", ""))
        except GrantRefused as exc:
            return _error(403, "GRANT_REFUSED", str(exc))
        try:
            length = int(headers.get("Content-Length") or "")
        except ValueError:
            return _error(411, "LENGTH_REQUIRED", "an upload needs a Content-Length")
        if length < 0 or length > (grant.max_size or 0) + FORM_OVERHEAD:
            return _error(413, "PAYLOAD_TOO_LARGE", f"this grant allows at most {grant.max_size} bytes")
        body = read(length)
        try:
            form = parse_form(headers.get("Content-Type"), body)
            key = form["key"].decode("utf-8")
            data = form["file"]
        except (FormError, KeyError, UnicodeDecodeError) as exc:
            return _error(400, "BAD_FORM", f"the upload form needs a key and a file: {exc}")
        try:
            grant = self.signer.verify(query["grant"], UPLOAD, key, len(data))
        except GrantRefused as exc:
            return _error(403, "GRANT_REFUSED", str(exc))
        if grant.sha256 is not None and hashlib.sha256(data).hexdigest() != grant.sha256:
            return _error(403, "GRANT_REFUSED", "the file's sha256 is not the one this grant was issued for")
        self.store.put(key, data)
        return 204, {}, b""

    def put_part(self, query: dict[str, str], headers: Any, read: Callable[[int], bytes]) -> Reply:
        """`PUT /objects/parts?grant=...`: the body is exactly one part of one multipart upload
        (its grant fixes key, upload id, part number and size); answers the part's ETag."""
        try:
            grant = self.signer.verify_part(query.get("grant", ""))
        except GrantRefused as exc:
            return _error(403, "GRANT_REFUSED", str(exc))
        try:
            length = int(headers.get("Content-Length") or "")
        except ValueError:
            return _error(411, "LENGTH_REQUIRED", "a part upload needs a Content-Length")
        if length != grant.max_size:
            return _error(413 if length > (grant.max_size or 0) else 400, "PART_SIZE",
                          f"this grant is for a part of exactly {grant.max_size} bytes, not {length}")
        try:
            streamed = getattr(self.store, "multipart_put_part_stream", None)
            if streamed is not None:
                etag = streamed(grant.key, grant.upload_id, grant.part_number, read, length)
            else:
                etag = self.store.multipart_put_part(grant.key, grant.upload_id, grant.part_number, read(length))
        except LookupError:
            return _error(404, "NO_SUCH_UPLOAD", "the multipart upload was completed or aborted")
        except ValueError as exc:
            return _error(400, "PART_SIZE", str(exc))
        return 200, {"ETag": f'"{etag}"'}, b""

    def download(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes | BinaryIO]:
        key = unquote(path.removeprefix("/objects/"))
        try:
            grant = self.signer.verify(query.get("grant", ""), DOWNLOAD, key)
        except GrantRefused as exc:
            return _error(403, "GRANT_REFUSED", str(exc))
        try:
            data = self.store.get(key, grant.version_id)
        except LookupError:
            return _error(404, "NO_SUCH_OBJECT", "the object does not exist")
        return 200, {"Content-Type": "application/octet-stream"}, data


POINTER_PATH = re.compile(r"^/pointers/[0-9a-f]{16}/[0-9a-f]{32}\.json$")
#: what CloudFront's cache policy does for `/pointers/*` on AWS (infra): 5 s at most
POINTER_CACHE = "public, max-age=5"


def pointer_reply(store: ModelStore, path: str, if_none_match: str | None) -> Reply:
    """`GET /pointers/{experiment_id}/{poll_id}.json`, as CloudFront serves it on AWS: the object
    with a strong ETag (its sha256), 304 when `If-None-Match` names it, 404 for any other path
    or a pointer not written yet. No grant: the poll id in the path is the capability."""
    if not POINTER_PATH.match(path):
        return _error(404, "NO_SUCH_OBJECT", "the object does not exist")
    key = path.lstrip("/")
    if store.head(key) is None:
        return _error(404, "NO_SUCH_OBJECT", "the object does not exist")
    data = store.get(key)
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    headers = {"ETag": etag, "Cache-Control": POINTER_CACHE}
    if if_none_match and etag in [tag.strip() for tag in if_none_match.split(",")]:
        return 304, headers, b""
    return 200, headers | {"Content-Type": "application/json"}, data


class GrantingStore:
    """An object store whose grants point at the gateway (aws-emulation: clients never get moto)."""

    def __init__(self, inner: ModelStore, signer: GrantSigner, public_url: str):
        self.inner, self.signer, self.public_url = inner, signer, public_url.rstrip("/")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str | None:
        return self.inner.put(key, data, content_type)

    def get(self, key: str, version_id: str | None = None) -> bytes:
        return self.inner.get(key, version_id)

    def get_versioned(self, key: str, version_id: str | None = None) -> tuple[bytes, str | None]:
        return self.inner.get_versioned(key, version_id)

    def get_range(self, key: str, start: int, end: int, version_id: str | None = None) -> bytes:
        return self.inner.get_range(key, start, end, version_id)

    def size(self, key: str) -> int | None:
        return self.inner.size(key)

    def head(self, key: str, version_id: str | None = None) -> tuple[int, str | None] | None:
        return self.inner.head(key, version_id)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def presigned_post(self, key: str, min_size: int, max_size: int, expires: int,
                       sha256: str | None = None) -> dict[str, Any]:
        grant = self.signer.sign(UPLOAD, key, expires, min_size, max_size, sha256)
        return {"url": f"{self.public_url}/objects?grant={grant}", "fields": {"key": key}}

    def presigned_get(self, key: str, expires: int, version_id: str | None = None, *,
                      filename: str | None = None) -> str:
        """A download grant of `key` (of that one version when `version_id` is given: the round
        artifacts route pins the update versions a manifest names). `filename` is for another
        origin's browser; the gateway's grant is same-origin, where the dashboard's `download`
        attribute names the file."""
        from urllib.parse import quote

        grant = self.signer.sign(DOWNLOAD, key, expires, version_id=version_id)
        return f"{self.public_url}/objects/{quote(key)}?grant={grant}"

    # -- multipart uploads: the parts go through the gateway, the rest to the inner store -----
    def multipart_create(self, key: str) -> str:
        return self.inner.multipart_create(key)

    def multipart_part_url(self, key: str, upload_id: str, part_number: int, size: int, expires: int) -> str:
        grant = self.signer.sign(PART, key, expires, size, size, upload_id=upload_id, part_number=part_number)
        return f"{self.public_url}/objects/parts?grant={grant}"

    def multipart_parts(self, key: str, upload_id: str) -> list[Part] | None:
        return self.inner.multipart_parts(key, upload_id)

    def multipart_complete(self, key: str, upload_id: str, parts: list[Part]) -> str | None:
        return self.inner.multipart_complete(key, upload_id, parts)

    def multipart_abort(self, key: str, upload_id: str | None = None) -> int:
        return self.inner.multipart_abort(key, upload_id)
