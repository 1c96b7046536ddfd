"""The S3 object store: models, updates, state and manifests in one private bucket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


class S3ObjectStore:
    """Every method takes keys relative to the bucket; the client is injectable for tests."""

    def __init__(self, bucket: str, client: Any | None = None, endpoint_url: str | None = None):
        self.bucket = bucket
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url,
            config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}),
        )

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

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

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def list_keys(self, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, last-modified epoch) for every object under prefix, paginated."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["LastModified"].timestamp()

    def presigned_post(self, key: str, min_size: int, max_size: int, expires: int) -> dict[str, Any]:
        """A POST limited to exactly `key` and a content-length range (S3 enforces both)."""
        return self.client.generate_presigned_post(
            Bucket=self.bucket, Key=key,
            Conditions=[["content-length-range", min_size, max_size]],
            ExpiresIn=expires,
        )

    def presigned_get(self, key: str, expires: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
        )
