"""`fma export mlflow` into a real local MLflow tracking store (SQLite), read back with MlflowClient."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import BUCKET
from history_helpers import initial_model, run_rounds

from fma.cli import main
from fma.domain.auth import Role

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")


def export(exp_id: str, uri: str, *extra: str) -> None:
    args = ["export", "mlflow", exp_id, "--tracking-uri", uri, "--bucket", BUCKET,
            "--table", os.environ["FMA_TABLE_NAME"], *extra]
    assert main(args) == 0


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_export_logs_params_metrics_per_round_artifacts_and_registry_versions(stack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, initial_model(), rounds={"min_updates": 2, "total_rounds": 2},
                                     strategy={"name": "fedavgm", "params": {"server_momentum": 0.5}})
    clients = stack.enroll(dev, exp_id, 2)
    run_rounds(stack, exp_id, clients, 1, 1)
    for i, (_, token) in enumerate(clients):
        res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/evaluations", token,
                        json_body={"num_examples": 10 * (i + 1), "metrics": {"accuracy": 0.5 + i / 10}})
        assert res.status == 201, res.body
    # When the experiment is exported after round 1, then again after round 2 and a registry version
    export(exp_id, uri)
    run_rounds(stack, exp_id, clients, 2, 2, seed=3)
    stack.api("POST", "/v1/registry/digits/versions", dev,
              json_body={"experiment_id": exp_id, "round": 2, "stage": "production", "notes": "best"})
    export(exp_id, uri, "--registered-model", "digits-mlflow")
    export(exp_id, uri, "--registered-model", "digits-mlflow")

    # Then there is one run, found by its tag, with the experiment's settings as params
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("fma")
    runs = client.search_runs([experiment.experiment_id], f"tags.`fma.experiment_id` = '{exp_id}'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["strategy"] == "fedavgm" and float(params["strategy.params.server_momentum"]) == 0.5
    assert params["rounds.total_rounds"] == "2" and params["rounds.min_updates"] == "2"
    # And every round is one step of each metric, logged once however often it is exported
    rounds = stack.api("GET", f"/v1/experiments/{exp_id}/rounds", dev).json()["rounds"]
    by_round = {r["round"]: r for r in rounds}
    assert history(client, run.info.run_id, "train.loss") == [(n, pytest.approx(by_round[n]["metrics"]["loss"]))
                                                              for n in (1, 2)]
    assert history(client, run.info.run_id, "updates.accepted") == [(1, 2.0), (2, 2.0)]
    assert history(client, run.info.run_id, "updates.rejected") == [(1, 0.0), (2, 0.0)]
    assert history(client, run.info.run_id, "eval.accuracy") == [(1, pytest.approx((0.5 * 10 + 0.6 * 20) / 30))]
    assert [s for s, _ in history(client, run.info.run_id, "aggregation_seconds")] == [1, 2]
    # And the manifests and the final model are artifacts with the bucket's bytes
    names = [f.path for f in client.list_artifacts(run.info.run_id, "manifests")]
    assert names == ["manifests/00000001.manifest.json", "manifests/00000002.manifest.json"]
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    for n in (1, 2):
        assert (local / "manifests" / f"{n:08d}.manifest.json").read_bytes() == stack.get_object(
            f"models/{exp_id}/{n:08d}.manifest.json")
    assert (local / "model" / f"{exp_id}-round-2.safetensors").read_bytes() == stack.get_object(
        f"models/{exp_id}/00000002.safetensors")
    # And the registry version is one registered-model version, aliased by its stage
    [mv] = client.search_model_versions("name = 'digits-mlflow'")
    assert mv.tags["fma.version"] == "1.0.0" and mv.tags["fma.registry_name"] == "digits"
    assert mv.run_id == run.info.run_id and mv.description == "best"
    assert client.get_model_version_by_alias("digits-mlflow", "production").version == mv.version
    assert (local / "registry" / "digits" / "1.0.0" / "model.safetensors").read_bytes() == stack.get_object(
        f"models/{exp_id}/00000002.safetensors")


def test_flatten_keeps_nested_settings_as_dotted_params():
    from fma.export_mlflow import flatten, round_metrics

    assert flatten("s", {"b": {"c": 1}, "a": None, "l": [1, 2]}) == {"s.a": "null", "s.b.c": "1", "s.l": "[1, 2]"}
    metrics = round_metrics({"metrics": {"loss": 1}, "accepted": 3, "rejected": 0, "late": 1,
                             "aggregation_seconds": 0.5, "privacy": {"epsilon": 2.0, "delta": None},
                             "cost": {"usd": 0.01, "note": "x"}})
    assert metrics == {"train.loss": 1.0, "updates.accepted": 3.0, "updates.rejected": 0.0, "updates.late": 1.0,
                       "aggregation_seconds": 0.5, "privacy.epsilon": 2.0, "cost.usd": 0.01}
