"""Re-run one round's aggregation from its manifest alone, with the engine the aggregate function uses.

The manifest names the strategy and its parameters, the global model it started from, and each
input: the pinned object version, its sha256 and the num_examples the strategy weighed it by.
The server optimizer state of the previous round is read from `state/`. Same inputs, same
engine, same seed: the same bytes, so a different sha256 means the recorded history is not
what produced the model.
"""

from __future__ import annotations

import json
from typing import Any

from fma.domain.aggregation import BufferedUpdate, Partitioning, UpdateInput, aggregate, aggregate_buffer
from fma.domain.codec import decode, encode
from fma.domain.safetensors_header import parse_header
from fma.domain.update_meta import parse_update_meta
from fma.services.aggregation import engine_seed, model_metadata
from fma.services.deps import manifest_key, state_key
from fma.services.history import sha256_hex
from fma.verify_sources import Source


class RerunError(RuntimeError):
    pass


def rerun_round(source: Source, experiment_id: str, n: int, manifest: dict[str, Any]) -> str:
    """The sha256 of the model that the manifest's inputs give."""
    if manifest.get("mode") == "async":
        return rerun_version(source, experiment_id, n, manifest)
    strategy = manifest["strategy"]
    global_bytes = _need(source, manifest["global_model"]["key"], _pinned(manifest["global_model"]), "global model")
    global_model, _ = decode(global_bytes)
    state = _previous_state(source, experiment_id, n)
    declared = {i["client_id"]: i for i in manifest["inputs"]}
    inputs = [_input(source, obj, declared[obj["client_id"]]) for obj in manifest["input_objects"]]
    result = aggregate(strategy["name"], strategy.get("params") or {}, global_model, inputs, state,
                       round_number=n, seed=engine_seed(experiment_id, n),
                       noise_seed=_noise_seed(source, experiment_id, n, manifest),
                       partitioning=Partitioning.from_json((manifest.get("info") or {}).get("partitioning")))
    return sha256_hex(encode(result.model, model_metadata(experiment_id, n, strategy["name"])))


def rerun_version(source: Source, experiment_id: str, n: int, manifest: dict[str, Any]) -> str:
    """An async version (docs/async.md): FedBuff over the manifest's buffer, each input against
    the base model the manifest names, weighed by the count it was aggregated with."""
    strategy, policy = manifest["strategy"], manifest["rounds"]
    current, _ = decode(_need(source, manifest["global_model"]["key"], _pinned(manifest["global_model"]),
                              "current model"))
    bases = {}
    for base in manifest["base_models"]:
        data = _need(source, base["key"], _pinned(base), f"base model {base['version']}")
        if sha256_hex(data) != base["sha256"]:
            raise RerunError(f"base model {base['key']} has sha256 {sha256_hex(data)}, the manifest records "
                             f"{base['sha256']}")
        bases[int(base["version"])] = UpdateInput(f"v{base['version']}", 1, base["sha256"], len(data),
                                                  lambda d=data: d, lambda a, b, d=data: d[a:b])
    declared = {(i["client_id"], i["round"]): i for i in manifest["inputs"]}
    buffer = []
    for obj in manifest["input_objects"]:
        facts = declared[(obj["client_id"], obj["round"])]
        update = _input(source, obj, {**facts, "num_examples": facts.get("counted_examples", facts["num_examples"])})
        buffer.append(BufferedUpdate(update, int(facts["base_version"])))
    result = aggregate_buffer(strategy["name"], strategy.get("params") or {}, current, buffer, bases,
                              _previous_state(source, experiment_id, n), current_version=n - 1,
                              staleness=policy["staleness"], server_learning_rate=float(policy["server_learning_rate"]),
                              seed=engine_seed(experiment_id, n))
    return sha256_hex(encode(result.model, model_metadata(experiment_id, n, strategy["name"])))


def _pinned(entry: dict[str, Any]) -> str | None:
    """The object version a manifest entry names (the initial model's validated one), if any."""
    version = entry.get("version_id")
    return version if isinstance(version, str) else None


def _noise_seed(source: Source, experiment_id: str, n: int, manifest: dict[str, Any]) -> Any:
    """DP noise is seeded from the deployment's secret key (services/dp_noise.py): a re-run needs
    a source that holds that key; without one it says so instead of reporting a mismatch."""
    noise = ((manifest.get("info") or {}).get("privacy") or {}).get("noise")
    if not noise:
        return None
    secrets = getattr(source, "secrets", None)
    if secrets is None:
        raise RerunError(f"round {n} adds DP noise seeded by the deployment's secret key "
                         f"({noise.get('key_id') or noise.get('source')}); this source cannot read it")
    from fma.services.dp_noise import reproduce_seed

    return reproduce_seed(secrets, noise, experiment_id, n)


def _previous_state(source: Source, experiment_id: str, n: int) -> dict[str, Any]:
    """The optimizer state round n-1 saved (its manifest says whether it saved one)."""
    if n < 2:
        return {}
    previous = source.read(manifest_key(experiment_id, n - 1))
    recorded = json.loads(previous).get("state") if previous is not None else None
    data = source.read(state_key(experiment_id, n - 1))
    if data is None:
        if recorded:
            raise RerunError(f"the server state of round {n - 1} ({recorded.get('key')}) cannot be read "
                             "(the API does not serve state/: re-run with --bucket and --table)")
        return {}
    if recorded and sha256_hex(data) != recorded.get("sha256"):
        raise RerunError(f"the server state of round {n - 1} has sha256 {sha256_hex(data)}, its manifest "
                         f"records {recorded.get('sha256')}")
    return {k: v.copy() for k, v in decode(data)[0].items()}


def _need(source: Source, key: str, version_id: str | None, what: str) -> bytes:
    data = source.read(key, version_id)
    if data is None:
        raise RerunError(f"{what} {key} is missing")
    return data


def _input(source: Source, obj: dict[str, Any], declared: dict[str, Any]) -> UpdateInput:
    """The update as the manifest declares it: its pinned bytes, weighed by the declared num_examples."""
    data = _need(source, obj["key"], obj.get("version_id"), f"input of {obj['client_id']}")
    meta = parse_update_meta(parse_header(data, total_size=len(data)).metadata)
    return UpdateInput(client_id=obj["client_id"], num_examples=declared["num_examples"],
                       sha256=declared.get("sha256") or "", size=len(data), fetch=lambda: data,
                       fetch_range=lambda a, b: data[a:b], metrics=meta.metrics)
