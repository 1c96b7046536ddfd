"""Token items: only the sha256 of a token is ever stored."""

from __future__ import annotations

import functools

from pynamodb.exceptions import DoesNotExist

from fma.adapters.dynamo_models import TokenItem
from fma.domain.auth import Role
from fma.domain.clock import iso
from fma.domain.records import TokenRecord


def token_pk(token_hash: str) -> str:
    return f"TOKEN#{token_hash}"


def token_item(rec: TokenRecord) -> TokenItem:
    return TokenItem(
        token_pk(rec.token_hash), "TOKEN", role=str(rec.role), principal_id=rec.principal_id,
        experiment_id=rec.experiment_id, name=rec.name, created_at=iso(),
        expires_at=rec.expires_at, max_uses=rec.max_uses, uses=rec.uses, revoked=rec.revoked,
        minted_by=rec.minted_by,
        ttl=int(rec.expires_at) + 86400 if rec.expires_at else None,
    )


class TokenRepository:
    def put_token(self, rec: TokenRecord) -> None:
        token_item(rec).save(condition=TokenItem.pk.does_not_exist())

    def get_token(self, token_hash: str) -> TokenRecord | None:
        try:
            item = TokenItem.get(token_pk(token_hash), "TOKEN", consistent_read=True)
        except DoesNotExist:
            return None
        role = Role(item.role)
        counter = None
        if role == Role.ENROLLMENT:  # counted on use shards (repo_enrollment), summed only if read
            from fma.adapters.dynamo_shards import count_uses

            counter = functools.partial(count_uses, token_hash, item.experiment_id)
        return TokenRecord(
            token_hash=token_hash, role=role, principal_id=item.principal_id,
            experiment_id=item.experiment_id,
            expires_at=float(item.expires_at) if item.expires_at is not None else None,
            max_uses=int(item.max_uses) if item.max_uses is not None else None,
            uses=int(item.uses or 0), uses_counter=counter, revoked=bool(item.revoked), name=item.name,
            minted_by=item.minted_by,
        )

    def revoke_token(self, token_hash: str) -> None:
        TokenItem(token_pk(token_hash), "TOKEN").update(
            actions=[TokenItem.revoked.set(True)], condition=TokenItem.pk.exists()
        )
