"""Why an enrollment token may not register a client: one rule, the same codes on every connector."""

from __future__ import annotations

from fma.domain.errors import Forbidden
from fma.domain.records import TokenRecord


def exhausted(max_uses: int | None) -> Forbidden:
    return Forbidden(f"the enrollment token has reached its max_uses ({max_uses})", code="ENROLLMENT_EXHAUSTED",
                     details={"reason": "max_uses", "max_uses": max_uses})


def check_enrollment(token: TokenRecord | None, now: float, count_uses: bool = True) -> None:
    """Raise unless `token` may register now. `count_uses=False` skips the uses check for a
    connector whose use shards refuse the registration themselves (reading the count would cost
    a batch read of every shard on every registration)."""
    if token is None or token.revoked:
        raise Forbidden("the enrollment token was revoked", code="TOKEN_REVOKED")
    if token.expires_at is not None and token.expires_at <= now:
        raise Forbidden("the enrollment token has expired", code="ENROLLMENT_EXHAUSTED", details={"reason": "expired"})
    if count_uses and token.max_uses is not None and token.uses >= token.max_uses:
        raise exhausted(token.max_uses)
