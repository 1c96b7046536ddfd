"""Ingestion of S3 objects: the initial model activates an experiment; updates are validated,
accepted exactly once, counted, and the round is sealed by exactly one caller."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from fma.domain.errors import UpdateRejected
from fma.domain.experiment import Experiment, new_round
from fma.domain.model_spec import ModelSpec
from fma.domain.records import UpdateRecord
from fma.domain.safetensors_header import HeaderLimits, header_length, parse_header
from fma.domain.states import ExperimentStatus, RoundState, UpdateStatus
from fma.domain.update_meta import parse_update_meta
from fma.domain.validation import UpdateLimits, validate_update
from fma.services.deps import Deps

MODEL_KEY = re.compile(r"^models/(?P<exp>[A-Za-z0-9-]{1,64})/00000000\.safetensors$")
UPDATE_KEY = re.compile(
    r"^updates/(?P<exp>[A-Za-z0-9-]{1,64})/(?P<round>\d{8})/(?P<client>[A-Za-z0-9-]{1,64})\.safetensors$"
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


def _read_checked(deps: Deps, key: str, max_bytes: int, spec: ModelSpec | None = None) -> tuple[bytes, str | None]:
    """Size, header and (given a spec) tensor layout are checked through ranged reads before the
    body is read: presigned POST limits are not enforced by every S3, and a crafted header must
    cost neither memory nor a download."""
    size = deps.store.size(key)
    if size is None:
        raise UpdateRejected("MISSING_OBJECT", "the uploaded object no longer exists")
    if size > max_bytes:
        raise UpdateRejected("TOO_LARGE", f"{size} bytes exceed max_update_bytes={max_bytes}")
    n = header_length(deps.store.get_range(key, 0, min(size, 9)), HeaderLimits())
    if 8 + n > size:
        raise UpdateRejected("NOT_SAFETENSORS", "the header is longer than the file")
    header = parse_header(deps.store.get_range(key, 0, 8 + n), total_size=size)
    if spec is not None:
        parse_update_meta(header.metadata)
        spec.check(header)
    return deps.store.get_versioned(key)


def ingest_initial_model(deps: Deps, experiment_id: str, key: str) -> IngestOutcome:
    exp = deps.repo.get_experiment(experiment_id)
    if exp is None or exp.status != ExperimentStatus.PENDING_MODEL:
        return IngestOutcome("duplicate" if exp else "ignored", experiment_id)
    try:
        data, _ = _read_checked(deps, key, exp.max_update_bytes)
        header = parse_header(data, total_size=len(data))
        spec = ModelSpec.from_header(header)
        if not spec.tensors:
            raise UpdateRejected("EMPTY_MODEL", "the model has no tensors")
        _check_finite(data)
    except UpdateRejected as exc:
        deps.repo.set_model_error(experiment_id, exc.reason)
        return IngestOutcome("rejected", experiment_id, 0, reason=exc.reason)
    now = deps.clock()
    first = new_round(exp, 1, now)
    deps.repo.activate(experiment_id, spec.to_json(), hashlib.sha256(data).hexdigest(), first)
    return IngestOutcome("activated", experiment_id, 0)


def _check_finite(data: bytes) -> None:
    import numpy as np

    from fma.domain.codec import decode

    tensors, _ = decode(data)
    for name, arr in tensors.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise UpdateRejected("NON_FINITE", f"{name} holds NaN or Inf")


def ingest_update(deps: Deps, experiment_id: str, n: int, client_id: str, key: str) -> IngestOutcome:
    exp = deps.repo.get_experiment(experiment_id)
    if exp is None or exp.model_spec is None:
        return IngestOutcome("ignored", experiment_id, n, client_id, reason="unknown experiment")
    existing = deps.repo.get_update(experiment_id, n, client_id)
    if existing is not None and existing.status in FINAL_UPDATE:
        return IngestOutcome("duplicate", experiment_id, n, client_id, sealed=try_seal(deps, exp, n))
    now = deps.clock()
    record = UpdateRecord(experiment_id, n, client_id, UpdateStatus.UPLOADING, updated_at=now)
    try:
        spec = ModelSpec.from_json(exp.model_spec)
        data, record.version_id = _read_checked(deps, key, exp.max_update_bytes, spec)
        record.sha256, record.size = hashlib.sha256(data).hexdigest(), len(data)
        valid = validate_update(data, spec,
                                UpdateLimits(max_update_bytes=exp.max_update_bytes), expected_round=n)
    except UpdateRejected as exc:
        record.reason = exc.reason
        deps.repo.reject_update(record)
        return IngestOutcome("rejected", experiment_id, n, client_id, reason=exc.reason)
    record.num_examples, record.metrics = valid.meta.num_examples, valid.meta.metrics
    result = deps.repo.accept_update(record)
    if result == "closed":
        deps.repo.mark_late(record)
        return IngestOutcome("late", experiment_id, n, client_id)
    if result == "inactive":
        deps.repo.push_upload_due(experiment_id, n, client_id, now + deps.limits.reconcile_grace_seconds)
        return IngestOutcome("deferred", experiment_id, n, client_id, reason="experiment is not running")
    status = "accepted" if result == "accepted" else "duplicate"
    return IngestOutcome(status, experiment_id, n, client_id, sealed=try_seal(deps, exp, n))


def try_seal(deps: Deps, exp: Experiment, n: int) -> bool:
    """Seal when the quota is met; only the caller whose conditional write wins invokes aggregation."""
    rnd = deps.repo.get_round(exp.id, n)
    if rnd is None or rnd.state != RoundState.OPEN:
        return False
    current = deps.repo.get_experiment(exp.id) or exp
    if current.status != ExperimentStatus.RUNNING:
        return False
    quota = current.policy.quota(current.clients)
    if rnd.accepted < quota or not deps.repo.seal_round(exp.id, n, quota, deps.clock(), deps.limits.lease_seconds):
        return False
    if deps.invoker is not None:
        deps.invoker.invoke_async({"experiment_id": exp.id, "round": n})
    return True
