"""Re-run a published round from its manifest and get the same bytes (an authorized audit).

The manifest names the global model, the exact update versions, the strategy and its params
and, under DP, the key id and label that seeded the noise. Re-running needs read access to
the objects and to that key (the SecretStore); nothing else a client or analyst holds
reproduces the noise (tests/functional/test_dp_noise_secret.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fma.domain.aggregation import Partitioning, UpdateInput, aggregate
from fma.domain.codec import decode, encode
from fma.domain.errors import NotFound
from fma.services.aggregation import engine_seed, load_state, model_metadata
from fma.services.deps import Deps, manifest_key
from fma.services.dp_noise import reproduce_seed


def reproduce_round(deps: Deps, experiment_id: str, n: int) -> bytes:
    """The model bytes round `n` published, computed again from what its manifest names."""
    try:
        manifest = json.loads(deps.store.get(manifest_key(experiment_id, n)))
    except Exception as exc:  # the store's own not-found error differs per connector
        raise NotFound(f"no manifest for round {n} of {experiment_id}") from exc
    pinned = manifest["global_model"].get("version_id")  # the initial model's validated version
    global_bytes = deps.store.get(manifest["global_model"]["key"], pinned if isinstance(pinned, str) else None)
    if hashlib.sha256(global_bytes).hexdigest() != manifest["global_model"]["sha256"]:
        raise ValueError("the global model changed since the manifest was written")
    global_model, _ = decode(global_bytes)
    facts = {i["client_id"]: i for i in manifest["inputs"]}
    inputs = [_input(deps, obj, facts[obj["client_id"]]) for obj in manifest["input_objects"]]
    noise = (manifest.get("info") or {}).get("privacy", {}).get("noise")
    seed = reproduce_seed(deps.secrets, noise, experiment_id, n) if noise else None
    strategy = manifest["strategy"]
    result = aggregate(strategy["name"], strategy["params"], global_model, inputs,
                       load_state(deps, experiment_id, n - 1), round_number=n,
                       seed=engine_seed(experiment_id, n), noise_seed=seed,
                       partitioning=Partitioning.from_json((manifest.get("info") or {}).get("partitioning")))
    return encode(result.model, model_metadata(experiment_id, n, strategy["name"]))


def _input(deps: Deps, obj: dict[str, Any], facts: dict[str, Any]) -> UpdateInput:
    key, version = obj["key"], obj.get("version_id")
    return UpdateInput(
        client_id=obj["client_id"], num_examples=int(facts["num_examples"] or 0), sha256=facts["sha256"] or "",
        size=int(obj["size"] or 0), fetch=lambda: deps.store.get(key, version),
        fetch_range=lambda a, b: deps.store.get_range(key, a, b, version),
    )
