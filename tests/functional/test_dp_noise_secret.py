"""DP noise from a server-side secret (issue 19, item 1), through the handlers.

The old seed, sha256("{experiment}:{round}"), let a client recompute the noise from the
model's metadata and subtract it (noiseless aggregate recovered to 1.2e-7). Now: nothing a
client or analyst reads (model metadata, manifest, round and experiment API) seeds a stream
that matches the noise, while an authorized re-run (with the key) gives the same bytes."""

from __future__ import annotations

import hashlib
import json
import stat

import numpy as np
import pytest
from harness import update_bytes

from fma.domain.aggregation.dp import add_noise_range
from fma.domain.auth import Role
from fma.domain.codec import decode
from fma.local import dispatch
from fma.services.dp_noise import derive_seed

Z, C, M = 5.0, 1.0, 6
SHAPE = (40, 50)


@pytest.fixture
def keyed(stack, tmp_path, monkeypatch):
    key_file = tmp_path / "state" / "dp-noise.key"
    monkeypatch.setenv("FMA_DP_SECRET_FILE", str(key_file))
    dispatch.reset_handler_caches()
    return stack, key_file


def dp_round(stack):
    dev = stack.token(Role.DEVELOPER)
    g = {"w": np.zeros(SHAPE, np.float32)}
    exp_id = stack.create_experiment(dev, g, strategy={"name": "fedavg", "params": {
        "dp": {"clipping_norm": C, "noise_multiplier": Z}}}, rounds={"min_updates": M, "total_rounds": 2})
    rng = np.random.default_rng(11)
    sent = []
    clients = stack.enroll(dev, exp_id, M)
    for client_id, token in clients:
        w = (rng.standard_normal(SHAPE) * 0.1).astype(np.float32)  # delta norm ~4: clipped to 1
        sent.append(w)
        assert stack.submit(exp_id, 1, token, update_bytes({"w": w}, 10, 1)).status == 202
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    assert stack.run_aggregations()[0]["status"] == "published"
    model_bytes = stack.get_object(f"models/{exp_id}/00000001.safetensors")
    noiseless = np.mean([w * min(1.0, C / np.linalg.norm(np.float64(w))) for w in sent], axis=0)
    published, metadata = decode(model_bytes)
    return dev, exp_id, clients, model_bytes, published["w"].astype(np.float64) - noiseless, metadata


def readable_strings(*documents) -> set[str]:
    """Every string and number in what clients and analysts can read."""
    out: set[str] = set()

    def walk(value):
        if isinstance(value, dict):
            for k, v in value.items():
                out.add(str(k))
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif value is not None:
            out.add(str(value))

    for doc in documents:
        walk(doc)
    return out


def candidate_seeds(strings: set[str], exp_id: str) -> list:
    seeds: list = [int.from_bytes(hashlib.sha256(f"{exp_id}:1".encode()).digest()[:8], "little")]  # the old seed
    for s in strings:
        digest = hashlib.sha256(s.encode()).digest()
        seeds += [int.from_bytes(digest[:8], "little"), [int.from_bytes(digest[i:i + 4], "little")
                                                         for i in range(0, 32, 4)], derive_seed(s.encode(), exp_id, 1)]
        if s.isdigit() and len(s) < 40:
            seeds.append(int(s))
    return seeds


def stream(seed, size: int, std: float) -> np.ndarray:
    """The noise a seed gives, in the layout rounds use now (one stream per 1 Mi-element chunk)."""
    noise = np.zeros(size, np.float32)
    add_noise_range(noise, 0, size, 1.0, seed)
    return noise.astype(np.float64) * std


def one_stream(seed, size: int, std: float) -> np.ndarray:
    """The noise a seed gave in rounds recorded before ranged_dp (one stream over the vector)."""
    return np.random.default_rng(seed).standard_normal(size, dtype=np.float32).astype(np.float64) * std


def test_nothing_a_client_or_analyst_reads_reproduces_the_noise(keyed):
    stack, key_file = keyed
    dev, exp_id, clients, _model_bytes, noise, metadata = dp_round(stack)
    analyst = stack.token(Role.ANALYST)
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    documents = [metadata, manifest, stack.round(dev, exp_id, 1), stack.round(analyst, exp_id, 1),
                 stack.round(clients[0][1], exp_id, 1), stack.experiment(dev, exp_id),
                 stack.experiment(analyst, exp_id),
                 stack.api("GET", f"/v1/experiments/{exp_id}/model", clients[0][1]).json()]
    std = manifest["info"]["privacy"]["noise_stddev"]
    assert std == pytest.approx(Z * C / M) and np.std(noise) == pytest.approx(std, rel=0.1)
    seeds = candidate_seeds(readable_strings(*documents), exp_id)
    assert len(seeds) > 100
    for seed in seeds:  # a regenerated stream would correlate ~1 with the noise (either layout)
        for layout in (stream, one_stream):
            guess = layout(seed, noise.size, std)
            assert abs(np.corrcoef(guess, noise.reshape(-1))[0, 1]) < 0.2, (seed, layout.__name__)
    # The key is a 0600 file; the records name it by id, and its bytes appear nowhere readable.
    key_hex = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    record = manifest["info"]["privacy"]["noise"]
    assert record["source"] == "secret" and record["key_id"].startswith("file:")
    assert stack.round(dev, exp_id, 1)["privacy"]["noise"]["key_id"] == record["key_id"]
    assert all(key_hex not in json.dumps(doc) for doc in documents)
    # And the key holder does regenerate it: recovering the noiseless aggregate to float32 rounding.
    authorized = stream(derive_seed(bytes.fromhex(key_hex), exp_id, 1), noise.size, std)
    assert np.max(np.abs(authorized - noise.reshape(-1))) < 1e-5


def test_an_authorized_rerun_gives_the_same_bytes(keyed):
    from fma.services.rerun import reproduce_round

    stack, _ = keyed
    _, exp_id, _, model_bytes, _, _ = dp_round(stack)
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    again = reproduce_round(dispatch.load_handler_module("aggregate").deps(), exp_id, 1)
    assert again == model_bytes and hashlib.sha256(again).hexdigest() == manifest["output"]["sha256"]


def test_without_a_key_store_the_noise_comes_from_the_csprng_and_says_so(stack, monkeypatch):
    monkeypatch.delenv("FMA_DP_SECRET_FILE", raising=False)
    monkeypatch.delenv("FMA_DP_SECRET_ARN", raising=False)
    dispatch.reset_handler_caches()
    _, exp_id, _, _, _, _ = dp_round(stack)
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    assert manifest["info"]["privacy"]["noise"] == {"source": "csprng", "reproducible": False}
