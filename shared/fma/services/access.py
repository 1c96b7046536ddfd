"""Tokens: minting (shown once, stored hashed), revoking, and resolving a bearer token to a Principal."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from fma.domain.auth import MINTABLE_ROLES, Principal, Role, hash_token, new_token, require_role
from fma.domain.clock import iso
from fma.domain.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from fma.domain.records import TokenRecord
from fma.domain.states import ENDED
from fma.services.bodies import listing, optional_int, require_object
from fma.services.deps import Deps, TokenDeps

TOKEN_ID = re.compile(r"[0-9a-f]{64}")


def mint_token(deps: Deps | TokenDeps, role: Role, principal_id: str | None = None, *, name: str | None = None,
               experiment_id: str | None = None, expires_in: int | None = None,
               max_uses: int | None = None, minted_by: str | None = None) -> tuple[str, TokenRecord]:
    token = new_token()
    expires_at = deps.clock() + expires_in if expires_in else None
    rec = TokenRecord(hash_token(token), role, principal_id or f"{role}-{uuid.uuid4().hex[:12]}",
                      experiment_id, expires_at, max_uses, 0, False, name, minted_by)
    deps.repo.put_token(rec)
    return token, rec


def create_token(deps: Deps, caller: Principal, body: object) -> dict[str, Any]:
    """POST /v1/tokens: an admin mints developer or analyst tokens (never admin ones: an admin
    token minted over HTTP would outlive every audit of who holds table access)."""
    require_role(caller, Role.ADMIN)
    data = require_object(body, ("role", "name", "expires_in_seconds"), ("role",))
    role = data["role"] if isinstance(data["role"], str) and data["role"] in MINTABLE_ROLES else None
    if role is None:
        raise InvalidInput(f"role must be one of: {listing(MINTABLE_ROLES)}",
                           details={"field": "role"})
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise InvalidInput("name must be a string of at most 200 characters", details={"field": "name"})
    expires_in = optional_int(data, "expires_in_seconds", None, 60, 10 * 365 * 86400)
    token, rec = mint_token(deps, Role(role), name=name, expires_in=expires_in, minted_by=caller.principal_id)
    return {"token": token, "token_id": rec.token_id, "role": str(rec.role), "principal_id": rec.principal_id,
            "expires_at": iso(rec.expires_at) if rec.expires_at else None}


def revoke_token(deps: Deps, caller: Principal, token_id: str) -> dict[str, Any]:
    """DELETE /v1/tokens/{token_id}: an admin revokes any token, a developer those it minted
    (its enrollment tokens). Others' tokens answer 404, so ids cannot be probed."""
    require_role(caller, Role.ADMIN, Role.DEVELOPER)
    rec = deps.repo.get_token(token_id) if TOKEN_ID.fullmatch(token_id) else None
    if rec is None or (caller.role != Role.ADMIN and rec.minted_by != caller.principal_id):
        raise NotFound("token not found", code="TOKEN_NOT_FOUND")
    if not rec.revoked:
        deps.repo.revoke_token(rec.token_hash)
    return {"token_id": rec.token_id, "role": str(rec.role), "revoked": True}


def authenticate(deps: Deps | TokenDeps, token: str) -> Principal:
    """Resolve a presented token; only its sha256 is looked up (no timing oracle on the secret).

    An enrollment token past its `max_uses` still authenticates: registering refuses it with
    403 ENROLLMENT_EXHAUSTED, which API Gateway could not say from the authorizer.
    """
    digest = hash_token(token)
    rec = deps.repo.get_token(digest)
    now = deps.clock()
    if rec is None:
        raise Unauthorized("unknown token", code="INVALID_TOKEN")
    if rec.revoked:
        raise Forbidden("token was revoked", code="TOKEN_REVOKED")
    if rec.expires_at is not None and rec.expires_at <= now:
        raise Unauthorized("token has expired", code="TOKEN_EXPIRED")
    if rec.role == Role.CLIENT and _experiment_ended_before(deps, rec.experiment_id,
                                                            now - deps.limits.client_token_grace_seconds):
        raise Unauthorized("the experiment of this client token has ended", code="TOKEN_EXPIRED")
    return Principal(rec.role, rec.principal_id, rec.experiment_id, digest)


def _experiment_ended_before(deps: Deps | TokenDeps, experiment_id: str | None, moment: float) -> bool:
    """A client token lives until its experiment's end plus the grace period; a terminal
    status is final, so the experiment's last update is when it ended."""
    exp = deps.repo.get_experiment(experiment_id) if experiment_id else None
    if exp is None or exp.status not in ENDED or not exp.updated_at:
        return False
    return datetime.fromisoformat(exp.updated_at).timestamp() <= moment


def client_token_expiry(deps: Deps) -> float:
    """Expiry of a new client token: its maximum lifetime plus the grace period."""
    return deps.clock() + deps.limits.client_token_max_seconds + deps.limits.client_token_grace_seconds


def require_live_client(deps: Deps, caller: Principal) -> None:
    """Writes by a client re-check its token: on AWS the authorizer's cache would otherwise let a
    revoked client upload for up to its TTL."""
    rec = deps.repo.get_token(caller.token_hash) if caller.token_hash else None
    if rec is None or rec.revoked:
        raise Forbidden("this client was revoked by the experiment's developer", code="CLIENT_REVOKED")
