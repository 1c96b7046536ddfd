"""The verifiable history: a hash chain from the initial model through every round's manifest.

Round n's manifest records `previous_manifest_sha256`: the sha256 of the bytes of round n-1's
manifest, and for round 1 the sha256 of the canonical *genesis* record (the initial model's
sha256 and size, the experiment's settings, and for a fork the parent round with its model and
manifest digests). Editing, removing or replacing any manifest, or any model whose sha256 a
manifest records, breaks a link that `fma verify` reports.

A manifest is written once: a retried or racing aggregation of the same round finds the first
one in place and keeps it (the model bytes are the same by construction), so the sha256 the
next round records, and the one the round item keeps, never go stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from fma.services.deps import Deps, manifest_key, model_key, model_version_id

GENESIS_KIND = "fma.genesis/v1"
#: experiment settings fixed at creation that the genesis record covers (when present).
GENESIS_SETTINGS = ("strategy", "rounds", "client_config", "max_update_bytes", "update_limits", "aggregation")


def canonical(value: Any) -> bytes:
    """The one byte form hashed for records that are not stored as files: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def genesis_record(experiment: Mapping[str, Any], initial_sha256: str, initial_size: int,
                   parent: Mapping[str, Any] | None) -> dict[str, Any]:
    """What round 1 chains to; `experiment` is the experiment's public form (API or table)."""
    return {
        "kind": GENESIS_KIND, "experiment_id": experiment["id"],
        "initial_model": {"key": f"models/{experiment['id']}/00000000.safetensors", "sha256": initial_sha256,
                          "size": initial_size},
        "settings": {k: experiment[k] for k in GENESIS_SETTINGS if k in experiment},
        "parent": dict(parent) if parent else None,
    }


def chain_fields(deps: Deps, experiment: Mapping[str, Any], n: int,
                 previous_model: bytes | tuple[str, int]) -> dict[str, Any]:
    """The manifest fields that link round n to its predecessor (round 1: to the genesis).
    `previous_model` is the model round n built on: its bytes, or its (sha256, size) when it
    was hashed as it streamed (a fanout reduce never holds it whole)."""
    if n == 1:
        lineage = deps.repo.get_lineage(experiment["id"])
        parent = parent_record(lineage.parent, lineage.parent_manifest_sha256, experiment.get("initial_sha256"))
        sha, size = (previous_model if isinstance(previous_model, tuple)
                     else (sha256_hex(previous_model), len(previous_model)))
        record = genesis_record(experiment, sha, size, parent)
        return {"genesis": record, "previous_manifest_sha256": sha256_hex(canonical(record))}
    try:
        previous = deps.store.get(manifest_key(experiment["id"], n - 1))
    except Exception:  # a missing predecessor is recorded as a break, never papered over
        return {"previous_manifest_sha256": None}
    return {"previous_manifest_sha256": sha256_hex(previous)}


def parent_record(parent: Any, manifest_sha256: str | None, model_sha256: str | None) -> dict[str, Any] | None:
    if parent is None:
        return None
    return {"experiment_id": parent.experiment_id, "round": parent.round, "model_sha256": model_sha256,
            "manifest_sha256": manifest_sha256}


def write_manifest(deps: Deps, key: str, data: bytes, written: Any = None) -> bytes:
    """Write once; if an earlier attempt of this round already wrote it, that one stands. When
    this write created it, the version that write returned is noted in `written`
    (services/unpublished.Written): no HEAD after the write."""
    version_id = deps.store.put_new(key, data, content_type="application/json")
    if version_id is not None:
        if written is not None:
            written.manifest = (key, version_id)
        return data
    return deps.store.get(key)


def artifacts(deps: Deps, caller: Any, experiment_id: str, n: int) -> dict[str, Any]:
    """GET .../rounds/{n}/artifacts: presigned downloads of what round n's history names (its model,
    manifest and pinned inputs), for `fma verify --url` (the experiment's developer)."""
    from fma.domain.errors import NotFound
    from fma.domain.states import RoundState
    from fma.services.experiments import load_managed

    exp = load_managed(deps, caller, experiment_id)
    rnd = deps.repo.get_round(exp.id, n) if n else None
    if (n == 0 and exp.model_version is None) or (n and (rnd is None or rnd.state != RoundState.PUBLISHED)):
        raise NotFound(f"round {n} is not published", code="MODEL_NOT_FOUND")
    keys: list[tuple[str, str | None]] = [(model_key(exp.id, n), model_version_id(exp, n))]
    if n:
        keys.append((manifest_key(exp.id, n), None))
        keys += _named_objects(deps, exp.id, n)
    expires = deps.limits.presign_seconds
    return {"round": n, "objects": [{"key": k, "version_id": v, "url": deps.store.presigned_get(k, expires, v)}
                                    for k, v in keys]}


def _named_objects(deps: Deps, experiment_id: str, n: int) -> list[tuple[str, str | None]]:
    """The pinned inputs the manifest names, limited to this round's update prefix. (The server
    optimizer state stays out: the API may not read state/; verify re-runs those over the bucket.)"""
    try:
        objects = list(json.loads(deps.store.get(manifest_key(experiment_id, n))).get("input_objects") or [])
    except Exception:  # no readable manifest: verify reports that; nothing else to grant
        return []
    prefix = f"updates/{experiment_id}/{n:08d}/"
    return [(o["key"], o.get("version_id") if isinstance(o.get("version_id"), str) else None) for o in objects
            if isinstance(o, dict) and isinstance(o.get("key"), str) and o["key"].startswith(prefix)]
