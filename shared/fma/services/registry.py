"""The model registry: named, immutable versions of published rounds, with one production version.

A version records the model's sha256 and size and the sha256 of the manifest it points at (the
manifest is the link into the experiment's hash chain, see `fma.services.history`), so whoever
downloads version 1.2.0 of a name can check exactly which history produced it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fma.domain.auth import Principal, Role, require_role
from fma.domain.clock import iso
from fma.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from fma.domain.registry import (
    FIRST_VERSION,
    RegistryName,
    RegistryVersion,
    Stage,
    parse_notes,
    parse_registry_name,
    parse_stage,
    parse_version,
)
from fma.domain.states import RoundState
from fma.services.bodies import require_object
from fma.services.deps import Deps, manifest_key, model_key
from fma.services.experiments import load_managed

READERS = (Role.DEVELOPER, Role.ANALYST, Role.ADMIN)
CREATE_FIELDS = ("experiment_id", "round", "version", "stage", "notes")
ATTEMPTS = 5


def create_version(deps: Deps, caller: Principal, name: str, body: object) -> dict[str, Any]:
    """POST /v1/registry/{name}/versions: 201 with the version and the manifest it points at."""
    require_role(caller, Role.DEVELOPER, Role.ADMIN)
    name = parse_registry_name(name)
    data = require_object(body, CREATE_FIELDS, ("experiment_id", "round"))
    stage = parse_stage(data.get("stage", "none"))
    notes = parse_notes(data.get("notes"))
    explicit = parse_version(data["version"]).text if data.get("version") is not None else None
    exp_id, n = data["experiment_id"], data["round"]
    if not isinstance(exp_id, str):
        raise InvalidInput("experiment_id must be a string", details={"field": "experiment_id"})
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 99_999_999:
        raise InvalidInput("round must be a published round number (1 or more)", code="INVALID_ROUND",
                           details={"field": "round"})
    exp = load_managed(deps, caller, exp_id)
    _check_name_owner(deps.repo.get_registry_name(name), caller)
    sha, size, manifest_sha = _published(deps, exp.id, n)
    for _ in range(ATTEMPTS):
        version = explicit or _next_version(deps, name)
        record = RegistryVersion(name, version, exp.id, n, sha, size, stage, notes, caller.principal_id,
                                 iso(deps.clock()), manifest_key(exp.id, n), manifest_sha)
        if deps.repo.get_registry_version(name, version) is not None:
            if explicit:
                raise _duplicate(name, version)
            continue
        current = deps.repo.get_registry_name(name)
        _check_name_owner(current, caller)
        demote = _production(deps, current) if stage == Stage.PRODUCTION else None
        if deps.repo.create_registry_version(record, owner=caller.principal_id,
                                             enforce_owner=caller.role != Role.ADMIN, demote=demote):
            return record.to_public()
    raise Conflict(f"{name} changed while registering; retry", code="REGISTRY_CONFLICT")


def list_names(deps: Deps, caller: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
    require_role(caller, *READERS)
    page = deps.repo.list_registry_names(limit, cursor)
    return {"names": [n.to_public() for n in page.items], "next_cursor": page.next_cursor}


def list_versions(deps: Deps, caller: Principal, name: str, limit: int, cursor: str | None) -> dict[str, Any]:
    require_role(caller, *READERS)
    _load_name(deps, name)
    page = deps.repo.list_registry_versions(name, limit, cursor)
    return {"name": name, "versions": [v.to_public() for v in page.items], "next_cursor": page.next_cursor}


def get_version(deps: Deps, caller: Principal, name: str, version: str) -> dict[str, Any]:
    """One version with presigned downloads of its model and its manifest."""
    require_role(caller, *READERS)
    v = _load_version(deps, name, version)
    expires = deps.limits.presign_seconds
    return v.to_public() | {"url": deps.store.presigned_get(model_key(v.experiment_id, v.round), expires),
                            "manifest_url": deps.store.presigned_get(v.manifest_key, expires)}


def patch_version(deps: Deps, caller: Principal, name: str, version: str, body: object) -> dict[str, Any]:
    """PATCH of the stage only; the previous production version moves to none atomically."""
    require_role(caller, Role.DEVELOPER, Role.ADMIN)
    data = require_object(body, ("stage",), ("stage",))
    stage = parse_stage(data["stage"])
    for _ in range(ATTEMPTS):
        v = _load_version(deps, name, version)
        current = deps.repo.get_registry_name(name)
        _check_name_owner(current, caller)
        if v.stage == stage:
            return v.to_public()
        demote = _production(deps, current) if stage == Stage.PRODUCTION else None
        if demote is not None and demote.version == v.version:
            demote = None
        if deps.repo.set_registry_stage(v, stage, demote, iso(deps.clock())):
            return _load_version(deps, name, version).to_public()
    raise Conflict(f"{name} changed while moving {version}; retry", code="REGISTRY_CONFLICT")


def _published(deps: Deps, experiment_id: str, n: int) -> tuple[str, int, str]:
    """(model sha256, size, manifest sha256) of a published round, from its manifest."""
    rnd = deps.repo.get_round(experiment_id, n)
    if rnd is None or rnd.state != RoundState.PUBLISHED or not rnd.model_sha256:
        raise Conflict(f"round {n} of {experiment_id} is not published", code="ROUND_NOT_PUBLISHED",
                       details={"experiment_id": experiment_id, "round": n})
    try:
        raw = deps.store.get(manifest_key(experiment_id, n))
        output = json.loads(raw)["output"]
    except Exception:  # a missing or unreadable manifest: the history of this round is broken
        raise Conflict(f"the manifest of round {n} cannot be read", code="MANIFEST_MISSING",
                       details={"round": n}) from None
    if output.get("sha256") != rnd.model_sha256 or not isinstance(output.get("size"), int):
        raise Conflict(f"the manifest of round {n} does not describe its published model",
                       code="MANIFEST_MISMATCH", details={"round": n})
    return rnd.model_sha256, output["size"], hashlib.sha256(raw).hexdigest()


def _next_version(deps: Deps, name: str) -> str:
    highest = deps.repo.highest_registry_version(name)
    return parse_version(highest.version).next_patch() if highest else FIRST_VERSION


def _production(deps: Deps, name: RegistryName | None) -> RegistryVersion | None:
    if name is None or not name.production_version:
        return None
    return deps.repo.get_registry_version(name.name, name.production_version)


def _check_name_owner(name: RegistryName | None, caller: Principal) -> None:
    if name is not None and caller.role != Role.ADMIN and name.owner != caller.principal_id:
        raise Forbidden(f"registry name {name.name} belongs to another developer", code="REGISTRY_NAME_FORBIDDEN",
                        details={"name": name.name})


def _load_name(deps: Deps, name: str) -> RegistryName:
    parsed = parse_registry_name(name)
    found = deps.repo.get_registry_name(parsed)
    if found is None:
        raise NotFound(f"registry name {name} not found", code="REGISTRY_NAME_NOT_FOUND")
    return found


def _load_version(deps: Deps, name: str, version: str) -> RegistryVersion:
    parse_registry_name(name)
    parse_version(version)
    found = deps.repo.get_registry_version(name, version)
    if found is None:
        raise NotFound(f"version {version} of {name} not found", code="VERSION_NOT_FOUND")
    return found


def _duplicate(name: str, version: str) -> Conflict:
    return Conflict(f"{name} already has version {version}; versions are immutable", code="VERSION_EXISTS",
                    details={"name": name, "version": version})
