"""The model and state are streamed into the store (issue 14): a crash mid-stream leaves the
previous model current and no object of the round, and the re-run writes the same bytes; the
round records the sha256 and size hashed while streaming."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from fma.domain.states import RoundState
from fma.services.aggregation import aggregate_round
from fma.services.deps import manifest_key, model_key, state_key
from fma.services.rerun import reproduce_round


class EncoderDied(RuntimeError):
    pass


def sealed(world, strategy: dict) -> str:
    from fma.services import experiments
    from fma.services.ingest import ingest_object

    body = {"name": "s", "strategy": strategy, "rounds": {"min_updates": 2, "total_rounds": 3}}
    exp_id = experiments.create_experiment(world.deps, world.dev, body)["experiment"]["id"]
    initial = {"dense/kernel": np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30), "b": np.zeros(30, np.float32)}
    from fma.domain.codec import encode

    experiments.put_initial_model(world.deps, world.dev, exp_id, encode(initial))
    assert ingest_object(world.deps, model_key(exp_id, 0)).status == "activated"
    for i, client in enumerate(world.clients(exp_id, 2)):
        world.submit(exp_id, client, 1, {k: v + np.float32(0.5 * (i + 1)) for k, v in initial.items()})
    world.invoker.calls.clear()
    return exp_id


def dying_stream(store, key_prefix: str, after_chunks: int = 1):
    """put_stream that dies after `after_chunks` chunks of keys under `key_prefix` (once)."""
    real = store.put_stream
    died = []

    def put_stream(key, chunks, content_type="application/octet-stream"):
        if died or not key.startswith(key_prefix):
            return real(key, chunks, content_type)

        def broken():
            for i, chunk in enumerate(chunks):
                if i == after_chunks:
                    died.append(key)
                    raise EncoderDied("the aggregate function died mid-stream")
                yield chunk

        return real(key, broken(), content_type)

    return put_stream, died


@pytest.mark.parametrize("prefix", ["models/", "state/"])
def test_a_crash_mid_stream_keeps_the_previous_model_and_the_rerun_writes_the_same_bytes(world, monkeypatch, prefix):
    # Given a sealed fedadam round (a model and a state are streamed)
    exp_id = sealed(world, {"name": "fedadam"})
    store = world.deps.store
    broken, died = dying_stream(store, prefix)
    monkeypatch.setattr(store, "put_stream", broken)
    # When the aggregation dies in the middle of streaming the model (or the state)
    with pytest.raises(EncoderDied):
        aggregate_round(world.deps, exp_id, 1)
    # Then round 1 is not published, model 0 is still the experiment's model, and the stream
    # that died left no object (nor a manifest)
    assert died and world.repo.get_round(exp_id, 1).state != RoundState.PUBLISHED
    assert world.repo.get_experiment(exp_id).model_version == 0
    assert not store.objects.get(died[0]) and not store.objects.get(manifest_key(exp_id, 1))
    # When the round is run again after the lease expired
    world.clock.now += 120
    result = aggregate_round(world.deps, exp_id, 1)
    # Then it publishes, the streamed sha256 and size are the stored model's, the manifest's and
    # the round's; and the bytes are those a re-run from the manifest computes
    assert result["status"] == "published"
    model = store.get(model_key(exp_id, 1))
    sha = hashlib.sha256(model).hexdigest()
    assert result["sha256"] == sha and result["bytes"] == len(model)
    manifest = json.loads(store.get(manifest_key(exp_id, 1)))
    assert manifest["output"] == {"key": model_key(exp_id, 1), "sha256": sha, "size": len(model)}
    assert manifest["state"]["sha256"] == hashlib.sha256(store.get(state_key(exp_id, 1))).hexdigest()
    assert world.repo.get_round(exp_id, 1).model_sha256 == sha
    assert hashlib.sha256(reproduce_round(world.deps, exp_id, 1)).hexdigest() == sha
    assert len(store.objects[died[0]]) == 1  # the re-run's version only: the crashed stream stored none
    assert {data for _, data in store.objects[model_key(exp_id, 1)]} == {model}  # any earlier one: same bytes
