"""The S3 object store: models, updates, state and manifests in one private bucket.

Presigned URLs name the bucket's *regional* virtual-hosted endpoint
(``https://{bucket}.s3.{region}.amazonaws.com``): the global ``s3.amazonaws.com`` name answers a
new bucket outside us-east-1 with a 307 redirect (a presigned POST does not survive it) and does
not serve opt-in regions at all. Existence is asked by listing, never by HEAD: under a
prefix-scoped grant S3 answers a HEAD of a missing key with 403, which looks like a fault.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from fma.domain.multipart import Part

#: parts of a streamed write (`put_stream`): 64 MiB, so 50 GiB take 800 of S3's 10,000 parts
#: and a function holds one part (plus the chunk being added) at a time.
STREAM_PART_BYTES = 64 << 20
#: S3's smallest part (all but the last).
MIN_PART_BYTES = 5 << 20


class S3ObjectStore:
    """Every method takes keys relative to the bucket; the client is injectable for tests."""

    def __init__(self, bucket: str, client: Any | None = None, endpoint_url: str | None = None,
                 region: str | None = None, stream_part_bytes: int = STREAM_PART_BYTES):
        self.bucket = bucket
        if stream_part_bytes < MIN_PART_BYTES:
            raise ValueError(f"stream_part_bytes must be at least {MIN_PART_BYTES} (S3's minimum part size)")
        self.stream_part_bytes = stream_part_bytes
        self.client = client or s3_client(region, endpoint_url)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str | None:
        """The new version's id (None on an unversioned bucket)."""
        resp = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        return _version(resp)

    def delete_version(self, key: str, version_id: str | None) -> None:
        """Permanently remove that one version (a versioned DELETE leaves no delete marker, so the
        version before it is the newest again); S3 answers a missing version with success."""
        extra = {"VersionId": version_id} if version_id else {}
        self.client.delete_object(Bucket=self.bucket, Key=key, **extra)

    def put_new(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str | None:
        """Write `key` only if it does not exist yet (S3 conditional write): the version it wrote
        (`"null"` on an unversioned bucket, which S3 accepts back as a VersionId), None if it existed."""
        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                          IfNoneMatch="*")
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                return None
            raise
        return resp.get("VersionId") or "null"

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str = "application/octet-stream"
                   ) -> str | None:
        """The chunks gathered into parts of `stream_part_bytes` (S3's minimum is 5 MiB, the last
        part may be smaller) and sent as a multipart upload; a stream shorter than one part is one
        PutObject. Any failure aborts the upload, so neither an object nor its parts are left."""
        parts: list[dict[str, Any]] = []
        upload_id: str | None = None
        buf = bytearray()
        try:
            for chunk in chunks:
                buf += chunk
                while len(buf) >= self.stream_part_bytes:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key,
                                                                        ContentType=content_type)["UploadId"]
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1,
                                                   bytes(buf[: self.stream_part_bytes])))
                    del buf[: self.stream_part_bytes]
            if upload_id is None:
                return self.put(key, bytes(buf), content_type)
            if buf or not parts:
                parts.append(self._upload_part(key, upload_id, len(parts) + 1, bytes(buf)))
            resp = self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                         MultipartUpload={"Parts": parts})
        except BaseException:
            if upload_id is not None:  # a failed abort must not hide why; the bucket's lifecycle rule ends it
                with contextlib.suppress(Exception):
                    self.multipart_abort(key, upload_id)
            raise
        return _version(resp)

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        resp = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def copy(self, source_key: str, key: str, source_version_id: str | None = None) -> str | None:
        """Server-side copy within the bucket (the bytes never pass through the caller), of the
        newest version or exactly `source_version_id`; the new version's id."""
        source = {"Bucket": self.bucket, "Key": source_key, **({"VersionId": source_version_id}
                                                               if source_version_id else {})}
        return _version(self.client.copy_object(Bucket=self.bucket, Key=key, CopySource=source))

    def get(self, key: str, version_id: str | None = None) -> bytes:
        return self.get_versioned(key, version_id)[0]

    def get_versioned(self, key: str, version_id: str | None = None) -> tuple[bytes, str | None]:
        """The object's bytes and the version they belong to (None on an unversioned bucket)."""
        extra = {"VersionId": version_id} if version_id else {}
        resp = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
        version = resp.get("VersionId")
        return resp["Body"].read(), None if version in (None, "null") else version

    def get_range(self, key: str, start: int, end: int, version_id: str | None = None) -> bytes:
        """Bytes [start, end) of the object (of one version of it, when given)."""
        if end <= start:
            return b""
        extra = {"VersionId": version_id} if version_id else {}
        resp = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}", **extra)
        data = resp["Body"].read()
        if len(data) != end - start:
            raise ValueError(f"short read of {key}: {len(data)} of {end - start} bytes")
        return data

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def head(self, key: str, version_id: str | None = None) -> tuple[int, str | None] | None:
        """(size, version id) of the newest version or of `version_id` (None on an unversioned
        bucket's id)."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key, **extra)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
                return None
            raise
        version = resp.get("VersionId")
        return int(resp["ContentLength"]), None if version in (None, "null") else version

    def exists(self, key: str) -> bool:
        """Whether `key` exists, asked by a one-key LIST (a HEAD may answer 403 for "absent")."""
        resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        return any(obj["Key"] == key for obj in resp.get("Contents", []))

    def presigned_post(self, key: str, min_size: int, max_size: int, expires: int,
                       sha256: str | None = None) -> dict[str, Any]:
        """A POST limited to exactly `key` and a content-length range (S3 enforces both).

        With `sha256` (hex, as the client declared it) the policy also binds S3's SHA-256
        checksum of the body, so S3 itself refuses other bytes; ingest compares it again.
        """
        fields, conditions = checksum_fields(sha256)
        return self.client.generate_presigned_post(
            Bucket=self.bucket, Key=key, Fields=fields or None,
            Conditions=[["content-length-range", min_size, max_size], *conditions],
            ExpiresIn=expires,
        )

    def presigned_get(self, key: str, expires: int, version_id: str | None = None,
                      filename: str | None = None) -> str:
        """A GET of `key` (of one version, given); with `filename` (letters, digits, `._-` only) S3
        answers with `Content-Disposition: attachment; filename="..."`, so a browser saves it under
        that name even from another origin (where the `download` attribute is ignored)."""
        params = {"Bucket": self.bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)

    # -- multipart uploads (presigned part URLs for clients; fma.domain.multipart) ------------
    def multipart_create(self, key: str) -> str:
        return self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]

    def multipart_part_url(self, key: str, upload_id: str, part_number: int, size: int, expires: int) -> str:
        """A presigned UploadPart of that one part (S3 does not bind its size: the completion
        checks every part's size against the plan through ListParts)."""
        params = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number}
        return self.client.generate_presigned_url("upload_part", Params=params, ExpiresIn=expires)

    def multipart_put_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> str:
        """Upload one part from the server side (local mode's gateway on aws-emulation): its ETag."""
        try:
            resp = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=part_number,
                                           Body=data)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchUpload", "404"):
                raise LookupError(f"no upload {upload_id} of {key}") from None
            raise
        return resp["ETag"].strip('"')

    def multipart_parts(self, key: str, upload_id: str) -> list[Part] | None:
        """ListParts, after a one-key ListMultipartUploads that proves the upload is `key`'s (S3
        answers NoSuchUpload for another key's id; not every emulation does)."""
        if upload_id not in self._uploads_of(key):
            return None
        parts, marker = [], 0
        while True:
            try:
                resp = self.client.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                              PartNumberMarker=marker, MaxParts=1000)
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("NoSuchUpload", "404", "NoSuchKey"):
                    return None
                raise
            parts += [Part(int(p["PartNumber"]), int(p["Size"]), p["ETag"].strip('"')) for p in resp.get("Parts", [])]
            if not resp.get("IsTruncated"):
                return parts
            marker = int(resp["NextPartNumberMarker"])

    def multipart_complete(self, key: str, upload_id: str, parts: list[Part]) -> str | None:
        listed = [{"PartNumber": p.part_number, "ETag": f'"{p.etag}"'} for p in parts]
        resp = self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                     MultipartUpload={"Parts": listed})
        return _version(resp)

    def multipart_abort(self, key: str, upload_id: str | None = None) -> int:
        ids = [upload_id] if upload_id else self._uploads_of(key)
        for uid in ids:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=uid)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("NoSuchUpload", "404"):
                    raise
        return len(ids)

    def _uploads_of(self, key: str) -> list[str]:
        """The uploads in flight of exactly `key` (a prefix listing: keys that extend it are skipped)."""
        ids, extra = [], {}
        while True:
            resp = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key, **extra)
            ids += [u["UploadId"] for u in resp.get("Uploads", []) if u["Key"] == key]
            if not resp.get("IsTruncated"):
                return ids
            extra = {"KeyMarker": resp["NextKeyMarker"], "UploadIdMarker": resp["NextUploadIdMarker"]}


def _version(resp: dict[str, Any]) -> str | None:
    version = resp.get("VersionId")
    return None if version in (None, "null") else version


def s3_client(region: str | None, endpoint_url: str | None = None) -> Any:
    """An S3 client signing for `region`'s own endpoint (virtual-hosted), or for `endpoint_url`
    (moto, local mode) when one is given."""
    if endpoint_url is None and region:
        endpoint_url = regional_endpoint(region)
    return boto3.client(
        "s3", region_name=region, endpoint_url=endpoint_url,
        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"},
                      retries={"max_attempts": 5, "mode": "standard"}),
    )


def regional_endpoint(region: str) -> str:
    """S3's regional endpoint, in the partition's DNS suffix (aws, aws-cn)."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://s3.{region}.{suffix}"


def checksum_fields(sha256: str | None) -> tuple[dict[str, str], list[dict[str, str]]]:
    """POST form fields and policy conditions binding the body's SHA-256 (base64 of the digest)."""
    if not sha256:
        return {}, []
    digest = base64.b64encode(bytes.fromhex(sha256)).decode()
    fields = {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": digest}
    return fields, [{name: value} for name, value in fields.items()]
