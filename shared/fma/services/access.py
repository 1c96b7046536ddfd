"""Tokens: minting (shown once, stored hashed) and resolving a bearer token to a Principal."""

from __future__ import annotations

import uuid
from typing import Any

from fma.domain.auth import MINTABLE_ROLES, Principal, Role, hash_token, new_token, require_role
from fma.domain.clock import iso
from fma.domain.errors import Forbidden, InvalidInput, Unauthorized
from fma.domain.records import TokenRecord
from fma.services.bodies import optional_int, require_object
from fma.services.deps import Deps, TokenDeps


def mint_token(deps: Deps | TokenDeps, role: Role, principal_id: str | None = None, *, name: str | None = None,
               experiment_id: str | None = None, expires_in: int | None = None,
               max_uses: int | None = None) -> tuple[str, TokenRecord]:
    token = new_token()
    expires_at = deps.clock() + expires_in if expires_in else None
    rec = TokenRecord(hash_token(token), role, principal_id or f"{role}-{uuid.uuid4().hex[:12]}",
                      experiment_id, expires_at, max_uses, 0, False, name)
    deps.repo.put_token(rec)
    return token, rec


def create_token(deps: Deps, caller: Principal, body: object) -> dict[str, Any]:
    """POST /v1/tokens: an admin mints developer, analyst or admin tokens."""
    require_role(caller, Role.ADMIN)
    data = require_object(body, ("role", "name", "expires_in_seconds"), ("role",))
    try:
        role = Role(data["role"])
    except ValueError:
        role = None
    if role not in MINTABLE_ROLES:
        raise InvalidInput(f"role must be one of {sorted(MINTABLE_ROLES)}", details={"field": "role"})
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise InvalidInput("name must be a string of at most 200 characters", details={"field": "name"})
    expires_in = optional_int(data, "expires_in_seconds", None, 60, 10 * 365 * 86400)
    token, rec = mint_token(deps, role, name=name, expires_in=expires_in)
    return {"token": token, "role": str(role), "principal_id": rec.principal_id,
            "expires_at": iso(rec.expires_at) if rec.expires_at else None}


def authenticate(deps: Deps | TokenDeps, token: str) -> Principal:
    """Resolve a presented token; only its sha256 is looked up (no timing oracle on the secret)."""
    digest = hash_token(token)
    rec = deps.repo.get_token(digest)
    if rec is None:
        raise Unauthorized("unknown token", code="INVALID_TOKEN")
    if rec.revoked:
        raise Unauthorized("token was revoked", code="TOKEN_REVOKED")
    if rec.expires_at is not None and rec.expires_at <= deps.clock():
        raise Unauthorized("token has expired", code="TOKEN_EXPIRED")
    if rec.role == Role.ENROLLMENT and not rec.usable(deps.clock()):
        raise Forbidden("enrollment token is used up", code="ENROLLMENT_EXHAUSTED")
    return Principal(rec.role, rec.principal_id, rec.experiment_id, digest)
