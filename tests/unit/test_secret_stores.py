"""The DP noise key's stores: a 0600 file (local mode) and Secrets Manager (AWS, on moto)."""

from __future__ import annotations

import stat

import boto3
import pytest
from moto import mock_aws

from fma.adapters.secret_stores import FileSecretStore, SecretsManagerStore
from fma.services.dp_noise import derive_seed, noise_seed, reproduce_seed


def test_key_file_is_created_once_with_mode_0600_and_read_back_by_any_process(tmp_path):
    path = tmp_path / "state" / "dp-noise.key"
    key_id, key = FileSecretStore(path).current()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert FileSecretStore(path).current() == (key_id, key)  # a restart finds the same key
    assert key.hex() not in key_id
    with pytest.raises(KeyError):
        FileSecretStore(path).key("file:0000")


def test_noise_seed_is_derived_per_experiment_and_round_and_reproducible_from_its_record(tmp_path):
    store = FileSecretStore(tmp_path / "k")
    seed, record = noise_seed(store, "exp-a", 3)
    assert seed == reproduce_seed(FileSecretStore(tmp_path / "k"), record, "exp-a", 3)
    assert seed != noise_seed(store, "exp-a", 4)[0] != noise_seed(store, "exp-b", 3)[0]
    assert len(seed) == 8 and all(0 <= w < 2**32 for w in seed)
    assert noise_seed(None, "exp-a", 3)[1] == {"source": "csprng", "reproducible": False}
    with pytest.raises(KeyError, match="CSPRNG"):
        reproduce_seed(store, {"source": "csprng"}, "exp-a", 3)


@mock_aws
def test_secrets_manager_key_ids_name_a_version_so_a_rotated_key_still_reruns_old_rounds():
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="fma-dp-noise", SecretString="a" * 64)["ARN"]
    store = SecretsManagerStore(arn, client=client)
    old_id, old_key = store.current()
    assert old_id.startswith(arn + ":version:") and old_key == b"a" * 64
    client.put_secret_value(SecretId=arn, SecretString="b" * 64)
    new_id, new_key = SecretsManagerStore(arn, client=client).current()
    assert new_id != old_id and new_key == b"b" * 64
    fresh = SecretsManagerStore(arn, client=client)
    assert fresh.key(old_id) == old_key and fresh.key(new_id) == new_key
    assert derive_seed(fresh.key(old_id), "e", 1) == derive_seed(old_key, "e", 1)
    with pytest.raises(KeyError):
        fresh.key("not-an-id")
