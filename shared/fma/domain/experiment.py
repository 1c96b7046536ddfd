"""Experiment and round policy: parsing and validating what a developer sends."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fma.domain import round_mode
from fma.domain.aggregation_config import AggregationSettings
from fma.domain.counted import CountedOnRead
from fma.domain.errors import InvalidInput
from fma.domain.records import RoundRecord
from fma.domain.states import ExperimentStatus, RoundState
from fma.domain.update_limits import UpdateLimits

ON_DEADLINE = ("aggregate", "extend", "fail")
MAX_NAME = 200
MAX_CLIENT_CONFIG_BYTES = 16 << 10


@dataclass(frozen=True)
class RoundPolicy:
    """`min_updates` is an int or "all" (every enrolled client, counted when sealing).

    `mode` "async" (issue 15, domain/round_mode.py) replaces the quota and the deadline with a
    buffer: `buffer_size` updates (or `min_buffer` after `max_wait_seconds`) publish the next
    version; there `min_updates` mirrors `buffer_size`, so a quota check reads the buffer.
    """

    min_updates: int | str = 2
    total_rounds: int = 10
    deadline_seconds: int | None = None
    on_deadline: str = "aggregate"
    min_updates_at_deadline: int = 1
    mode: str = "sync"
    buffer_size: int | None = None
    max_staleness: int = round_mode.DEFAULT_MAX_STALENESS
    max_wait_seconds: int | None = None
    min_buffer: int = 1
    staleness: Mapping[str, Any] | None = None
    server_learning_rate: float = 1.0

    FIELDS = ("min_updates", "total_rounds", "deadline_seconds", "on_deadline", "min_updates_at_deadline")
    ALL_FIELDS = (*FIELDS, "mode", *round_mode.ASYNC_ONLY)

    def __post_init__(self) -> None:
        if self.mode == "async" and self.buffer_size is not None:
            object.__setattr__(self, "min_updates", self.buffer_size)

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    @classmethod
    def parse(cls, data: object) -> RoundPolicy:
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise InvalidInput("rounds must be an object", details={"field": "rounds"})
        unknown = sorted(str(k)[:64] for k in set(data) - set(cls.ALL_FIELDS))
        if unknown:
            raise InvalidInput(f"unknown field(s) in rounds: {', '.join(unknown)}", code="UNKNOWN_FIELD",
                               details={"field": "rounds", "unknown": unknown})
        mode = round_mode.parse_mode(data)
        values = {k: data[k] for k in cls.ALL_FIELDS if k in data}
        if mode == "async":
            values["staleness"] = round_mode.parse_staleness(data.get("staleness"))
        policy = cls(**values)
        policy.validate()
        if policy.is_async:  # stored as a float whatever JSON number was sent
            policy = replace(policy, server_learning_rate=float(policy.server_learning_rate))
        return policy

    def validate(self) -> None:
        _positive_int("rounds.total_rounds", self.total_rounds, 100_000)
        if self.is_async:
            round_mode.check_async(self)
            return
        if self.min_updates != "all":
            _positive_int("rounds.min_updates", self.min_updates, 100_000)
        if self.deadline_seconds is not None:
            _positive_int("rounds.deadline_seconds", self.deadline_seconds, 30 * 86400)
        if self.on_deadline not in ON_DEADLINE:
            raise InvalidInput(f"rounds.on_deadline must be one of: {', '.join(ON_DEADLINE)}",
                               details={"field": "rounds.on_deadline"})
        _positive_int("rounds.min_updates_at_deadline", self.min_updates_at_deadline, 100_000)

    def quota(self, enrolled_clients: Callable[[], int]) -> int:
        """Updates needed to seal; "all" needs every enrolled client (and at least one). The
        count is asked for only then: on aws it is a batch read of the experiment's tally shards."""
        if self.min_updates == "all":
            return max(1, enrolled_clients())
        return int(self.min_updates)

    def smallest_buffer(self) -> int:
        """Fewest updates an async version may aggregate: `min_buffer` once the wait ran out."""
        return self.min_buffer if self.max_wait_seconds else int(self.buffer_size or 1)

    def staleness_fn(self) -> Mapping[str, Any]:
        return self.staleness or round_mode.DEFAULT_STALENESS

    def to_json(self) -> dict[str, Any]:
        if self.is_async:
            keys = ("mode", "total_rounds", *round_mode.ASYNC_ONLY)
            out = {k: getattr(self, k) for k in keys}
            out["staleness"] = dict(self.staleness_fn())
            return out
        # no "mode" key in sync mode: the policy reads as before issue 15, so the genesis records
        # of earlier experiments' histories (services/history.py hashes it) still verify
        return {k: getattr(self, k) for k in self.FIELDS}


@dataclass
class Experiment:
    id: str
    name: str
    owner: str
    strategy_name: str
    strategy_params: dict[str, Any]
    policy: RoundPolicy
    client_config: dict[str, Any] = field(default_factory=dict)
    max_update_bytes: int = 100 << 20
    status: ExperimentStatus = ExperimentStatus.PENDING_MODEL
    current_round: int = 0
    model_version: int | None = None
    model_spec: list[dict[str, Any]] | None = None
    model_sha256: str | None = None
    model_error: str | None = None
    initial_sha256: str | None = None
    #: the object version of models/{id}/00000000 that was validated (or copied) at activation:
    #: every read of version 0 is pinned to it, so a later write to that key changes nothing.
    initial_version_id: str | None = None
    update_limits: UpdateLimits = field(default_factory=UpdateLimits)
    aggregation: AggregationSettings = field(default_factory=AggregationSettings)
    #: enrolled (not revoked) clients; completed on first read from `clients_counter` (counted.py)
    clients: int = CountedOnRead("clients_counter")  # type: ignore[assignment]
    created_at: str = ""
    updated_at: str = ""
    archived: bool = False
    #: what its write spread is derived from (fma.domain.sharding); fixed at creation.
    expected_clients: int = 0
    shards: int = 1
    #: `initial_model: {size, sha256}` as declared at creation (a multipart upload of the initial
    #: model is checked against the size, ingest against the sha256); None when not declared.
    initial_declared_size: int | None = None
    initial_declared_sha256: str | None = None
    initial_upload_id: str | None = None
    #: names its pointer object (services/pointer.py): given to its clients only; None: no pointer
    poll_id: str | None = None
    clients_counter: Callable[[], int] | None = field(default=None, repr=False, compare=False)

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "owner": self.owner, "status": str(self.status),
            "strategy": {"name": self.strategy_name, "params": self.strategy_params},
            "rounds": self.policy.to_json(), "client_config": self.client_config,
            "max_update_bytes": self.max_update_bytes, "update_limits": self.update_limits.to_json(),
            "aggregation": self.aggregation.to_json(),
            "current_round": self.current_round,
            "model_version": self.model_version, "model_spec": self.model_spec,
            "model_sha256": self.model_sha256, "initial_sha256": self.initial_sha256,
            "initial_version_id": self.initial_version_id,
            "model_error": self.model_error, "clients": self.clients,
            "created_at": self.created_at, "updated_at": self.updated_at, "archived": self.archived,
            "expected_clients": self.expected_clients, "shards": self.shards,
        }


def parse_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise InvalidInput(f"name must be a non-empty string of at most {MAX_NAME} characters",
                           details={"field": "name"})
    return value.strip()


def parse_client_config(value: object) -> dict[str, Any]:
    import json

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput("client_config must be an object", details={"field": "client_config"})
    if len(json.dumps(value)) > MAX_CLIENT_CONFIG_BYTES:
        raise InvalidInput("client_config is too large", details={"field": "client_config"})
    return dict(value)


def _positive_int(name: str, value: object, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidInput(f"{name} must be an integer from 1 to {maximum}", details={"field": name})


def new_round(exp: Experiment, n: int, now: float) -> RoundRecord:
    """Round n of `exp`, OPEN from `now`, with its deadline when the policy sets one (in async
    mode: when a partial buffer may publish, `max_wait_seconds` after the version opened)."""
    wait = exp.policy.max_wait_seconds if exp.policy.is_async else exp.policy.deadline_seconds
    deadline = now + wait if wait else None
    return RoundRecord(exp.id, n, RoundState.OPEN, min_updates=str(exp.policy.min_updates), deadline=deadline,
                       opened_at=now)
