"""Ingestion of S3 objects: the initial model activates an experiment; updates are validated,
accepted exactly once, counted, and the round is sealed by exactly one caller.

An object's key is not proof of who wrote it: an update is considered only when the API
recorded an upload request for that client and round (the UPLOADING record, made for a client
token of that experiment), and accepted only when its bytes have the sha256 recorded there.
Anything else under `updates/` is ignored with a log and counts nothing. Every byte of an
object is untrusted: each way it can be wrong ends in UpdateRejected (a REJECTED update, or the
experiment's `model_error`), never in an exception that would make the event retry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fma.domain.errors import UpdateRejected
from fma.domain.experiment import Experiment, new_round
from fma.domain.model_spec import ModelSpec
from fma.domain.ranged import RangedObject
from fma.domain.records import UpdateRecord
from fma.domain.states import ExperimentStatus, RoundState, UpdateStatus
from fma.domain.validation import (
    GlobalReader,
    ValidationLimits,
    ValidUpdate,
    global_reader,
    validate_initial_model_stream,
    validate_update_stream,
)
from fma.services.deps import Deps, model_key, model_version_id
from fma.services.ranged_reads import open_ranged

MODEL_KEY = re.compile(r"^models/(?P<exp>[A-Za-z0-9-]{1,64})/00000000\.safetensors$")
UPDATE_KEY = re.compile(
    r"^updates/(?P<exp>[A-Za-z0-9-]{1,64})/(?P<round>\d{8})/(?P<client>[A-Za-z0-9-]{1,64})\.safetensors$",
    re.ASCII,
)
FINAL_UPDATE = (UpdateStatus.ACCEPTED, UpdateStatus.APPLIED, UpdateStatus.LATE)


@dataclass(frozen=True)
class IngestOutcome:
    """`status`: activated | accepted | rejected | late | duplicate | deferred | ignored."""

    status: str
    experiment_id: str | None = None
    round: int | None = None
    client_id: str | None = None
    reason: str | None = None
    sealed: bool = False


def ingest_object(deps: Deps, key: str) -> IngestOutcome:
    if m := MODEL_KEY.match(key):
        return ingest_initial_model(deps, m["exp"], key)
    if m := UPDATE_KEY.match(key):
        return ingest_update(deps, m["exp"], int(m["round"]), m["client"], key)
    return IngestOutcome("ignored", reason=f"not an FMA object key: {key[:200]}")


def _open_checked(deps: Deps, key: str, max_bytes: int) -> tuple[RangedObject, str | None]:
    """The uploaded object, pinned to the version measured, if it exists and fits `max_bytes`
    (presigned limits are not enforced by every S3, so the size is checked again here)."""
    opened = open_ranged(deps.store, key)
    if opened is None:
        raise UpdateRejected("MISSING_OBJECT", "the uploaded object no longer exists")
    if opened[0].size > max_bytes:
        raise UpdateRejected("TOO_LARGE", f"{opened[0].size} bytes exceed max_update_bytes={max_bytes}")
    return opened


def ingest_initial_model(deps: Deps, experiment_id: str, key: str) -> IngestOutcome:
    """Validate the newest object at the key and activate with exactly that version pinned.

    Once activated, the key is never read again but at the pinned version: the developer's
    presigned POST stays valid until it expires, and a write through it is a new version that
    no read of version 0 sees. Its event, like a redelivered one, is a "duplicate" of the
    activation (logged with the reason): never validated, it changes nothing."""
    exp = deps.repo.get_experiment(experiment_id)
    if exp is None:
        return IngestOutcome("ignored", experiment_id, reason="unknown experiment")
    if exp.status != ExperimentStatus.PENDING_MODEL:
        return IngestOutcome("duplicate", experiment_id, 0, reason=(
            f"the initial model was accepted at activation (version {exp.initial_version_id}); "
            "later objects at its key are never read"))
    try:
        obj, version_id = _open_checked(deps, key, exp.max_update_bytes)
        spec, sha256 = validate_initial_model_stream(obj)
        if exp.initial_declared_sha256 is not None and sha256 != exp.initial_declared_sha256:
            raise UpdateRejected("SHA256_MISMATCH", "the uploaded bytes do not have the sha256 declared in "
                                 "initial_model")
    except UpdateRejected as exc:
        deps.repo.set_model_error(experiment_id, exc.reason)
        return IngestOutcome("rejected", experiment_id, 0, reason=exc.reason)
    now = deps.clock()
    first = new_round(exp, 1, now)
    if not deps.repo.activate(experiment_id, spec.to_json(), sha256, first, version_id):
        return IngestOutcome("duplicate", experiment_id, 0, reason="activated meanwhile by another event")
    return IngestOutcome("activated", experiment_id, 0)


def ingest_update(deps: Deps, experiment_id: str, n: int, client_id: str, key: str) -> IngestOutcome:
    exp = deps.repo.get_experiment(experiment_id)
    if exp is None or exp.model_spec is None:
        return IngestOutcome("ignored", experiment_id, n, client_id, reason="unknown experiment")
    existing = deps.repo.get_update(experiment_id, n, client_id)
    if existing is None:  # never asked for: an unknown client, another experiment's, or no request
        return IngestOutcome("ignored", experiment_id, n, client_id, reason="no upload request for this key")
    if existing.status in FINAL_UPDATE:
        return IngestOutcome("duplicate", experiment_id, n, client_id, sealed=try_seal(deps, exp, n))
    now = deps.clock()
    record = UpdateRecord(experiment_id, n, client_id, UpdateStatus.UPLOADING, updated_at=now,
                          declared_sha256=existing.declared_sha256)
    try:
        valid = _validate(deps, exp, record, key)
    except UpdateRejected as exc:
        record.reason = exc.reason
        deps.repo.reject_update(record)
        return IngestOutcome("rejected", experiment_id, n, client_id, reason=exc.reason)
    record.num_examples, record.metrics = valid.meta.num_examples, valid.meta.metrics
    if exp.policy.is_async:  # issue 15: it joins the open buffer, not round n (services/buffered_ingest.py)
        from fma.services.buffered_ingest import accept_async

        return accept_async(deps, exp, record)
    result = deps.repo.accept_update(record)
    if result == "closed":
        deps.repo.mark_late(record)
        return IngestOutcome("late", experiment_id, n, client_id)
    if result == "inactive":
        deps.repo.push_upload_due(experiment_id, n, client_id, now + deps.limits.reconcile_grace_seconds)
        return IngestOutcome("deferred", experiment_id, n, client_id, reason="experiment is not running")
    status = "accepted" if result == "accepted" else "duplicate"
    return IngestOutcome(status, experiment_id, n, client_id, sealed=try_seal(deps, exp, n))


def _validate(deps: Deps, exp: Experiment, record: UpdateRecord, key: str) -> ValidUpdate:
    """Check the object (pinning the version read) over ranged reads: its sha256, then its
    contents; memory stays O(chunk) whatever the update's size.

    A client revoked after it asked for this upload holds a presigned POST that S3 still
    honours: its bytes land, but they never count (CLIENT_REVOKED)."""
    enrolled = deps.repo.get_client_token_hash(exp.id, record.client_id)
    if enrolled is None or enrolled[1]:
        raise UpdateRejected("CLIENT_REVOKED", "the client was revoked after it asked for this upload")
    spec = ModelSpec.from_json(exp.model_spec or [])
    obj, record.version_id = _open_checked(deps, key, exp.max_update_bytes)
    limits = ValidationLimits(max_update_bytes=exp.max_update_bytes,
                              max_num_examples=exp.update_limits.max_num_examples,
                              max_update_norm=exp.update_limits.max_update_norm)
    reader = _global_model(deps, exp, record.round - 1) if limits.max_update_norm is not None else None
    valid = validate_update_stream(obj, spec, limits, expected_round=record.round, global_model=reader,
                                   declared_sha256=record.declared_sha256 or "")
    record.sha256, record.size = valid.sha256, valid.size
    return valid


def _global_model(deps: Deps, exp: Experiment, version: int) -> GlobalReader:
    """The model round `version + 1` trains from, read range by range (pinned to one version:
    the initial model's validated one)."""
    key = model_key(exp.id, version)
    opened = open_ranged(deps.store, key, version_id=model_version_id(exp, version))
    if opened is None:
        raise LookupError(f"the global model {key} is missing")
    obj = opened[0]
    header, _ = obj.read_header()
    return global_reader(header, obj.read)


def try_seal(deps: Deps, exp: Experiment, n: int) -> bool:
    """Seal when the quota is met; only the caller whose conditional write wins invokes aggregation."""
    if exp.policy.is_async:  # the open buffer seals (and opens the next one), whatever round n is
        from fma.services.buffered_ingest import try_seal_buffer

        current = deps.repo.get_experiment(exp.id) or exp
        return try_seal_buffer(deps, current, current.current_round)
    rnd = deps.repo.get_round(exp.id, n)
    if rnd is None or rnd.state != RoundState.OPEN:
        return False
    # The round policy never changes, so the quota of the experiment this ingest read is the
    # quota; only a met quota reads the experiment again (has it been paused or stopped since?).
    # Most accepts end here, and META, read consistently by every request, is the hottest item.
    quota = exp.policy.quota(lambda: exp.clients)
    if rnd.accepted < quota:
        return False
    current = deps.repo.get_experiment(exp.id) or exp
    if current.status != ExperimentStatus.RUNNING:
        return False
    if not deps.repo.seal_round(exp.id, n, quota, deps.clock(), deps.limits.lease_seconds):
        return False
    if deps.invoker is not None:
        deps.invoker.invoke_async({"experiment_id": exp.id, "round": n})
    return True
