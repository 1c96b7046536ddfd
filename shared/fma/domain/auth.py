"""Who may do what: roles, experiment scope and token hashing. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from fma.domain.errors import Forbidden, Unauthorized


class Role(StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    ANALYST = "analyst"
    CLIENT = "client"
    ENROLLMENT = "enrollment"


#: what POST /v1/tokens mints; admin tokens come only from `fma token create` (table access).
MINTABLE_ROLES = frozenset({Role.DEVELOPER, Role.ANALYST})
TOKEN_PREFIX = "fma_"


@dataclass(frozen=True)
class Principal:
    """The caller as resolved by the authorizer; `experiment_id` scopes client/enrollment tokens."""

    role: Role
    principal_id: str
    experiment_id: str | None = None
    token_hash: str | None = None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_match(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def parse_bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization header", code="MISSING_TOKEN")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 512:
        raise Unauthorized("Authorization must be 'Bearer <token>'", code="INVALID_TOKEN")
    return token.strip()


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise Forbidden(f"role {principal.role} may not do this", code="FORBIDDEN_ROLE")


def can_read_experiment(principal: Principal, experiment_id: str, owner: str) -> bool:
    if principal.role in (Role.ADMIN, Role.ANALYST):
        return True
    if principal.role == Role.DEVELOPER:
        return owner == principal.principal_id
    return principal.experiment_id == experiment_id


def can_manage_experiment(principal: Principal, owner: str) -> bool:
    return principal.role == Role.ADMIN or (principal.role == Role.DEVELOPER and owner == principal.principal_id)
