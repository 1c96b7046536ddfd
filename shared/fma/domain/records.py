"""Plain records the repository hands to services: no pynamodb types leak past adapters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fma.domain.auth import Role
from fma.domain.counted import CountedOnRead
from fma.domain.states import RoundState, UpdateStatus


@dataclass(frozen=True)
class TokenRecord:
    token_hash: str
    role: Role
    principal_id: str
    experiment_id: str | None
    expires_at: float | None
    max_uses: int | None
    #: completed on first read from `uses_counter` (fma.domain.counted)
    uses: int = CountedOnRead("uses_counter")  # type: ignore[assignment]
    revoked: bool = False
    name: str | None = None
    minted_by: str | None = None
    uses_counter: Callable[[], int] | None = field(default=None, repr=False, compare=False)

    @property
    def token_id(self) -> str:
        """The token's public id: the sha256 it is stored under, which cannot be used as a token
        (the authorizer hashes what it is shown), so it can be listed, logged and revoked by."""
        return self.token_hash

    def usable(self, now: float) -> bool:
        if self.revoked or (self.expires_at is not None and self.expires_at <= now):
            return False
        return self.max_uses is None or self.uses < self.max_uses


@dataclass
class RoundRecord:
    experiment_id: str
    round: int
    state: RoundState
    accepted: int = 0
    rejected: int = 0
    late: int = 0
    min_updates: str = "1"
    deadline: float | None = None
    opened_at: float = 0.0
    sealed_at: float | None = None
    published_at: float | None = None
    lease_owner: str | None = None
    lease_expires: float | None = None
    attempts: int = 0
    aggregation_seconds: float | None = None
    metrics: dict[str, float] | None = None
    info: dict[str, Any] | None = None
    model_sha256: str | None = None
    reason: str | None = None
    #: "quota" or "deadline": what sealed the round (None while OPEN, and on rounds sealed before it was kept).
    sealed_by: str | None = None
    #: when the latest aggregation attempt took its lease.
    aggregation_started_at: float | None = None
    #: "attempt N: ..." of the latest aggregation attempt that raised or let its lease expire.
    last_error: str | None = None


@dataclass
class UpdateRecord:
    experiment_id: str
    round: int
    client_id: str
    status: UpdateStatus
    num_examples: int | None = None
    metrics: dict[str, float] | None = None
    sha256: str | None = None
    size: int | None = None
    reason: str | None = None
    updated_at: float = 0.0
    version_id: str | None = None
    #: what the client declared when it asked for the upload (POST) or the API computed (PUT).
    declared_sha256: str | None = None
    #: async mode: the version whose buffer the update joined (None until accepted, and in sync mode).
    applied_in: int | None = None
    #: the size the client declared for a presigned or multipart upload (the multipart plan's size).
    declared_size: int | None = None
    #: the store's multipart upload of this update (None: a presigned POST or a direct PUT).
    upload_id: str | None = None


@dataclass
class EvaluationRecord:
    round: int
    client_id: str
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RefusalRecord:
    """Uploads of a client that the API refused in a round for a reason worth showing (a pause)."""

    round: int
    client_id: str
    code: str
    reason: str
    count: int = 1
    first_at: float = 0.0
    last_at: float = 0.0


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None
