"""Idempotency records (fma.services.idempotency): claim with a conditional put, then complete
or release. DynamoDB's TTL deletes expired records lazily, so every condition also treats a
record past `expires_at` as absent."""

from __future__ import annotations

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError

from fma.adapters.dynamo_models import IdempotencyItem
from fma.services.ports import StoredRequest

IN_PROGRESS, COMPLETED = "IN_PROGRESS", "COMPLETED"


def _pk(record_id: str) -> str:
    return f"IDEM#{record_id}"


class IdempotencyRepository:
    def claim_idempotency(self, record_id: str, fingerprint: str, now: float, lock_seconds: float,
                          ttl_seconds: float) -> StoredRequest | None:
        """None if this caller won the claim; else the record that is there (read consistently)."""
        item = IdempotencyItem(_pk(record_id), "IDEM", fingerprint=fingerprint, state=IN_PROGRESS,
                               lock_expires=now + lock_seconds, expires_at=now + ttl_seconds,
                               ttl=int(now + ttl_seconds) + 3600)
        stale = (IdempotencyItem.state == IN_PROGRESS) & (IdempotencyItem.lock_expires < now) \
            & (IdempotencyItem.fingerprint == fingerprint)
        try:
            item.save(condition=IdempotencyItem.pk.does_not_exist() | (IdempotencyItem.expires_at < now) | stale)
            return None
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
        try:
            found = IdempotencyItem.get(_pk(record_id), "IDEM", consistent_read=True)
        except DoesNotExist:  # expired and deleted between the two calls: the retry claims it
            return StoredRequest(fingerprint, IN_PROGRESS)
        status = int(found.response_status) if found.response_status is not None else None
        return StoredRequest(found.fingerprint, found.state, status, found.response_body)

    def complete_idempotency(self, record_id: str, status: int, body: str) -> None:
        IdempotencyItem(_pk(record_id), "IDEM").update(actions=[
            IdempotencyItem.state.set(COMPLETED), IdempotencyItem.response_status.set(status),
            IdempotencyItem.response_body.set(body)], condition=IdempotencyItem.pk.exists())

    def release_idempotency(self, record_id: str) -> None:
        try:
            IdempotencyItem(_pk(record_id), "IDEM").delete(condition=IdempotencyItem.state == IN_PROGRESS)
        except DeleteError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
