"""What the services need from the outside world: typed ports that every connector implements.

Two stores make a connector: the metadata store (tokens, experiments, clients, rounds, updates,
evaluations, due items) and the model-data store (objects: models, updates, state, manifests).
`fma.adapters.aws` (DynamoDB + S3), `fma.adapters.sqlite_fs` (SQLite + files) and
`fma.adapters.memory` (dictionaries) implement them; `tests/contract/` is what proves that a
connector keeps the semantics the services rely on (conditional writes, exactly-once counts,
one seal winner, leases, versioned reads). See docs/connectors.md.

Every method that changes state is one atomic conditional write: it either happens completely
and returns True / a result, or changes nothing. Counting methods (accept, reject, late) count
exactly once however often and however concurrently they are called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fma.domain.experiment import Experiment
from fma.domain.multipart import Part
from fma.domain.records import EvaluationRecord, Page, RefusalRecord, RoundRecord, TokenRecord, UpdateRecord
from fma.domain.registry import Lineage, RegistryName, RegistryVersion, RoundRef, Stage
from fma.domain.states import ExperimentStatus, RoundState


@dataclass(frozen=True)
class StoredRequest:
    """What the repository keeps per record (`body`: the encrypted response)."""

    fingerprint: str
    state: str  # IN_PROGRESS or COMPLETED
    status: int | None = None
    body: str | None = None


@runtime_checkable
class TokenStore(Protocol):
    """Tokens by the sha256 of their secret (the secret itself is never stored)."""

    def put_token(self, rec: TokenRecord) -> None:
        """Create; a second token with the same hash is refused (the store raises)."""

    def get_token(self, token_hash: str) -> TokenRecord | None: ...

    def revoke_token(self, token_hash: str) -> None: ...


@runtime_checkable
class TokenAuthStore(TokenStore, Protocol):
    """What resolving a token needs: tokens and the experiment a client token belongs to."""

    def get_experiment(self, experiment_id: str) -> Experiment | None: ...


@runtime_checkable
class IdempotencyStore(Protocol):
    """Idempotency-Key records (fma.services.idempotency): claim, then complete or release.
    A record past its `expires_at` counts as absent."""

    def claim_idempotency(self, record_id: str, fingerprint: str, now: float, lock_seconds: float,
                          ttl_seconds: float) -> StoredRequest | None:
        """None if this caller won the claim (a new record, an expired one, or a stale in-progress
        one with the same fingerprint); else the record that is there."""

    def complete_idempotency(self, record_id: str, status: int, body: str) -> None: ...

    def release_idempotency(self, record_id: str) -> None:
        """Delete an in-progress record (the request failed); a completed one stays."""


@runtime_checkable
class ExperimentStore(Protocol):
    """Experiments, their clients and the experiment-level transitions."""

    def create_experiment(self, exp: Experiment) -> None:
        """Create; an existing id is refused."""

    def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    def list_experiments(self, owner: str | None, limit: int, cursor: str | None, archived: bool = False) -> Page:
        """Newest first, archived ones apart (`archived`); `next_cursor` is opaque, and a tampered
        one (or one of another query) raises InvalidInput INVALID_CURSOR."""

    def set_archived(self, experiment_id: str, owner: str, archived: bool) -> Experiment:
        """Move the experiment into (or out of) the archived list; nothing else changes.
        NotFound EXPERIMENT_NOT_FOUND if there is no such experiment."""

    def set_status(self, experiment_id: str, allowed_from: set[ExperimentStatus],
                   target: ExperimentStatus) -> Experiment:
        """Move to `target` if the status is in `allowed_from`, else raise Conflict."""

    def set_model_error(self, experiment_id: str, reason: str) -> None: ...

    def activate(self, experiment_id: str, spec: list[dict], sha256: str, first_round: RoundRecord,
                 version_id: str | None = None) -> bool:
        """PENDING_MODEL -> RUNNING and round 1 OPEN together, recording `version_id` (the object
        version that was validated) as `initial_version_id`; False if already done."""

    def register_client(self, experiment_id: str, client_id: str, name: str | None,
                        enrollment_hash: str, client_token: TokenRecord, now: float) -> None:
        """Consume one enrollment use, add the client, its token and the count, all or nothing."""

    def finish_experiment(self, experiment_id: str, status: ExperimentStatus) -> bool: ...

    def get_client_token_hash(self, experiment_id: str, client_id: str) -> tuple[str | None, bool] | None:
        """(token hash, revoked) of an enrolled client; None if there is no such client."""

    def revoke_client(self, experiment_id: str, client_id: str, token_hash: str | None) -> bool:
        """Mark the client revoked, revoke its token and uncount it, all or nothing; False (and
        nothing changed) if it was already revoked."""

    def stop_experiment(self, experiment_id: str, allowed_from: set[ExperimentStatus], reason: str) -> bool:
        """STOPPED and the current round (if unfinished) FAILED in one transaction."""


@runtime_checkable
class RoundStore(Protocol):
    """Rounds, updates and evaluations: the exactly-once counting of DESIGN section 5."""

    def get_round(self, experiment_id: str, n: int) -> RoundRecord | None: ...

    def list_rounds(self, experiment_id: str, limit: int, cursor: str | None) -> Page:
        """Oldest first, paginated by an opaque cursor."""

    def list_updates(self, experiment_id: str, n: int, accepted_only: bool = False) -> list[UpdateRecord]:
        """Every update of a round in client-id order (aggregation depends on the order); only
        the ACCEPTED and APPLIED ones with `accepted_only` (what aggregation reads: a connector
        with sharded partitions then reads only the partitions that counted an accept)."""

    def get_update(self, experiment_id: str, n: int, client_id: str) -> UpdateRecord | None: ...

    def begin_upload(self, experiment_id: str, n: int, client_id: str, now: float, grace: float = 300.0,
                     sha256: str | None = None, size: int | None = None, upload_id: str | None = None) -> None:
        """Record UPLOADING with the sha256 ingest must see, the declared `size` and the store's
        multipart `upload_id` (a completion checks the parts against them), due for
        reconciliation after `grace`; Conflict once accepted."""

    def accept_update(self, u: UpdateRecord) -> str:
        """"accepted" | "duplicate" | "closed" | "inactive": one transaction, counted once."""

    def reject_update(self, u: UpdateRecord) -> bool: ...

    def mark_late(self, u: UpdateRecord) -> bool: ...

    def mark_applied(self, experiment_id: str, n: int, client_id: str, now: float) -> bool: ...

    def mark_applied_many(self, experiment_id: str, n: int, client_ids: list[str], now: float) -> int:
        """mark_applied for each (batched or in parallel): how many moved to APPLIED."""

    def put_evaluation(self, experiment_id: str, rec: EvaluationRecord, now: float) -> None:
        """One per client and round; a second raises Conflict."""

    def list_evaluations(self, experiment_id: str, n: int) -> list[EvaluationRecord]: ...

    def record_refusal(self, experiment_id: str, n: int, client_id: str, code: str, reason: str,
                       now: float) -> None:
        """Count one upload the API refused (during a pause): one record per client and round."""

    def list_refusals(self, experiment_id: str, n: int) -> list[RefusalRecord]:
        """The refusals of round n in client-id order."""


@runtime_checkable
class LifecycleStore(Protocol):
    """Seal (one winner), lease (reclaimable after expiry), publish (one transaction), fail."""

    def seal_round(self, experiment_id: str, n: int, quota: int, now: float, lease_seconds: float) -> bool: ...

    def acquire_lease(self, experiment_id: str, n: int, owner: str, now: float,
                      lease_seconds: float) -> RoundRecord | None: ...

    def publish_round(self, experiment_id: str, n: int, owner: str, *, sha256: str, metrics: dict,
                      info: dict, seconds: float, now: float, next_round: RoundRecord | None) -> bool: ...

    def force_seal(self, experiment_id: str, n: int, now: float, lease_seconds: float) -> bool: ...

    def extend_deadline(self, experiment_id: str, n: int, deadline: float) -> bool: ...

    def push_due(self, experiment_id: str, n: int, when: float, state: RoundState) -> bool: ...

    def fail_round(self, experiment_id: str, n: int, reason: str) -> bool: ...

    def record_aggregation_error(self, experiment_id: str, n: int, error: str, owner: str | None = None) -> bool:
        """Keep `error` as the round's `last_error` while SEALED or AGGREGATING (and, given
        `owner`, while that owner holds the lease); False otherwise."""


@runtime_checkable
class DueStore(Protocol):
    """What the sweeper visits: rounds past their deadline or lease, overdue uploads."""

    def list_due(self, now: float, limit: int = 100) -> list[RoundRecord]: ...

    def list_due_uploads(self, now: float, limit: int = 100) -> list[UpdateRecord]: ...

    def push_upload_due(self, experiment_id: str, n: int, client_id: str, when: float | None) -> None: ...


@runtime_checkable
class FailureStore(Protocol):
    """Unexpected (not client-caused) failures, counted on the item so bounds hold across retries."""

    def note_update_failure(self, experiment_id: str, n: int, client_id: str, reason: str, now: float) -> int:
        """One more failed attempt at an UPLOADING update: the attempts so far (0: none to count)."""

    def fail_update(self, experiment_id: str, n: int, client_id: str, reason: str, now: float) -> bool:
        """UPLOADING -> FAILED with its reason (never over an acceptance or a rejection)."""

    def note_round_sweep_failure(self, experiment_id: str, n: int, reason: str) -> int:
        """One more sweep of a live round that raised: the count so far (0: no such round)."""


@runtime_checkable
class BufferStore(Protocol):
    """Async mode's buffers (issue 15, docs/async.md): round v OPEN is the buffer of version v."""

    def accept_buffered(self, u: UpdateRecord, version: int, capacity: int) -> str:
        """ACCEPTED into buffer `version` (`applied_in`) and counted there, in one transaction,
        while that round is OPEN with fewer than `capacity` updates and the experiment RUNNING:
        "accepted" | "duplicate" | "closed" | "full" | "inactive"."""

    def list_buffer(self, experiment_id: str, version: int) -> list[UpdateRecord]:
        """The updates that joined buffer `version`, in (round, client id) order."""

    def seal_buffer(self, experiment_id: str, version: int, quota: int, now: float, lease_seconds: float,
                    next_round: RoundRecord | None) -> bool:
        """OPEN -> SEALED with at least `quota` updates, and `next_round` OPEN as the current
        round, in one transaction (exactly one winner)."""

    def publish_version(self, experiment_id: str, version: int, owner: str, *, sha256: str, metrics: dict,
                        info: dict, seconds: float, now: float, complete: bool) -> bool:
        """PUBLISHED by the lease owner on top of version - 1 (in order), the experiment
        COMPLETED with the last version, in one transaction."""


@runtime_checkable
class RegistryStore(Protocol):
    """The model registry and lineage (issue 16): every connector keeps them.

    A version string of a name is created once: of racing creators exactly one gets True. Stage
    changes and production hand-overs are one transaction each (one production version per name).
    """

    def get_registry_name(self, name: str) -> RegistryName | None: ...

    def list_registry_names(self, limit: int, cursor: str | None) -> Page: ...

    def list_registry_versions(self, name: str, limit: int, cursor: str | None) -> Page:
        """Highest version first (semantic-version precedence), paginated by an opaque cursor."""

    def get_registry_version(self, name: str, version: str) -> RegistryVersion | None: ...

    def highest_registry_version(self, name: str) -> RegistryVersion | None: ...

    def create_registry_version(self, v: RegistryVersion, *, owner: str, enforce_owner: bool,
                                demote: RegistryVersion | None) -> bool:
        """Add `v` (and its experiment link; the name on first use, owned by `owner`), moving `demote`
        (the current production version) to none; False, with nothing written, if the version
        exists, the name is another owner's (`enforce_owner`) or production moved meanwhile."""

    def set_registry_stage(self, v: RegistryVersion, stage: Stage, demote: RegistryVersion | None,
                           now: str) -> bool:
        """Move `v` from the stage it was read with to `stage`; False if anything moved meanwhile."""

    def create_fork(self, exp: Experiment, spec: list[dict], sha256: str, first_round: RoundRecord,
                    parent: RoundRef, parent_manifest_sha256: str | None) -> bool:
        """`exp` RUNNING at version 0, round 1 OPEN, its parent link and the parent's child link, in
        one transaction on condition that the parent round is published (round 0: has a model)."""

    def get_lineage(self, experiment_id: str) -> Lineage:
        """Parent, children (oldest first) and the registry versions of one experiment."""


@runtime_checkable
class MetadataStore(TokenStore, ExperimentStore, RoundStore, LifecycleStore, DueStore, FailureStore,
                    IdempotencyStore, BufferStore, RegistryStore, Protocol):
    """Everything the services keep about experiments: one connector object implements it all."""


@runtime_checkable
class ModelStore(Protocol):
    """Objects by key (models/, updates/, state/): versioned, ranged reads, signed grants.

    `presigned_post` and `presigned_get` are grants for exactly one object: a client holding one
    can reach nothing else (for an upload: nothing but that key and the granted size range).
    """

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str | None:
        """A new version of `key`: its version id (None only on an unversioned store)."""

    def delete_version(self, key: str, version_id: str | None) -> None:
        """Remove exactly that version of `key` (the newest version becomes the one before it);
        nothing if it is gone already. `None` (an unversioned store) removes the key."""

    def get(self, key: str, version_id: str | None = None) -> bytes: ...

    def get_versioned(self, key: str, version_id: str | None = None) -> tuple[bytes, str | None]:
        """The bytes and the version they belong to (pinned reads return that version's bytes)."""

    def get_range(self, key: str, start: int, end: int, version_id: str | None = None) -> bytes:
        """Bytes [start, end); a short read raises ValueError."""

    def size(self, key: str) -> int | None:
        """The newest version's size, None if the key does not exist."""

    def head(self, key: str, version_id: str | None = None) -> tuple[int, str | None] | None:
        """(size, version id) of the newest version (or of exactly `version_id`), None if there is
        none: ranged reads pinned to that id see one version however often the key is rewritten."""

    def exists(self, key: str) -> bool: ...

    def put_new(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str | None:
        """Write `key` only if it has no version yet (manifests are written once): the version id it
        wrote (`"null"` on an unversioned store, S3's own name for that version), None if it had one.
        The writer learns its version from the write itself, never from a HEAD a rival could race."""

    def copy(self, source_key: str, key: str, source_version_id: str | None = None) -> str | None:
        """A new version of `key` with the bytes of `source_key` (its newest version, or exactly
        `source_version_id`), copied inside the store; the new version's id."""

    def presigned_post(self, key: str, min_size: int, max_size: int, expires: int,
                       sha256: str | None = None) -> dict[str, Any]:
        """`{"url", "fields"}`: a multipart POST of one object of an allowed size (and, given
        `sha256`, exactly those bytes) to `key`."""

    def presigned_get(self, key: str, expires: int, version_id: str | None = None, *,
                      filename: str | None = None) -> str:
        """A URL that downloads `key` (and nothing else) until it expires: its newest version, or
        exactly `version_id` when given (a pinned update a manifest names); `filename` asks for
        `Content-Disposition: attachment` under that name where the store serves another origin."""

    # -- multipart uploads of clients' large objects (issue 13 item 4, fma.domain.multipart) --
    def multipart_create(self, key: str) -> str:
        """Start a multipart upload of `key`: its upload id (S3 CreateMultipartUpload)."""

    def multipart_part_url(self, key: str, upload_id: str, part_number: int, size: int, expires: int) -> str:
        """A URL that PUTs exactly part `part_number` (of `size` bytes) of that upload and nothing
        else; its answer's `ETag` header names the part."""

    def multipart_parts(self, key: str, upload_id: str) -> list[Part] | None:
        """The parts the store holds for that upload of `key` (ListParts), in part order; None if
        there is no such upload in flight (unknown, another key's, completed or aborted)."""

    def multipart_complete(self, key: str, upload_id: str, parts: list[Part]) -> str | None:
        """Join the parts into a new version of `key` (its id) and announce it like any write
        (the object-created event); the upload is gone afterwards."""

    def multipart_abort(self, key: str, upload_id: str | None = None) -> int:
        """Abort that upload of `key`, or (None) every upload of `key` in flight, freeing their
        parts: how many were aborted."""

    # -- streamed writes of the server's own large objects (issue 14: models, state) ----------
    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str = "application/octet-stream"
                   ) -> str | None:
        """A new version of `key` from `chunks` (consumed once, in order), without the whole
        object in memory: its version id, as `put`. All or nothing: if the stream (or the store)
        fails midway, the error is raised and no version, part or upload of it is left behind,
        so the key's newest version is still the one before."""


@dataclass(frozen=True)
class ObjectCreated:
    """One object-created event: `event_id` acknowledges it, `key` names the object,
    `deliveries` counts how often it was received (SQS's ApproximateReceiveCount)."""

    event_id: str
    key: str
    deliveries: int = 1


@runtime_checkable
class ObjectEvents(Protocol):
    """Object-created events, delivered at least once until acknowledged (S3 -> SQS, an outbox)."""

    def receive(self, limit: int = 10, wait_seconds: float = 0.0) -> list[ObjectCreated]: ...

    def acknowledge(self, event_ids: list[str]) -> None: ...

    def retry(self, event_ids: list[str]) -> None:
        """Deliver these received events again after a short jittered backoff over their
        deliveries (EVENT_RETRY_BASE_SECONDS doubling up to EVENT_RETRY_CAP_SECONDS), not after
        the whole visibility timeout: a failed ingest is retried within seconds."""
        ...


#: a retried event comes back after 1, 2, 4 ... s (jittered into [half, full]), at most 30 s.
EVENT_RETRY_BASE_SECONDS = 1.0
EVENT_RETRY_CAP_SECONDS = 30.0


class Invoker(Protocol):
    def invoke_async(self, payload: Mapping[str, Any]) -> None: ...


class SecretStore(Protocol):
    """The server-side key that seeds DP noise; its bytes never leave the aggregate function.

    `current()` returns (key id, key bytes) of the key to use now; `key(key_id)` returns the
    bytes of an earlier key (an authorized re-run), or raises KeyError when it is not held.
    A key id names a key without revealing it (an ARN and version, or a fingerprint).
    """

    def current(self) -> tuple[str, bytes]: ...
    def key(self, key_id: str) -> bytes: ...
