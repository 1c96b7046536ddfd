"""`fma export mlflow`: an FMA experiment as one MLflow run, through MLflow's own client library.

The run is found again by its `fma.experiment_id` tag, so exporting twice updates it: params are
the experiment's fixed settings, each published round is one step of every metric (only steps
not logged yet are added), artifacts are overwritten in place, and registry versions become
registered-model versions once each (tagged with their FMA name and version).
Needs the optional extra `pip install 'fma[mlflow]'` (mlflow-skinny); never in the Lambda layer.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

from fma.services.deps import manifest_key, model_key
from fma.verify_sources import Source, VerifyError

MLFLOW_EXPERIMENT = "fma"
TAG = "fma.experiment_id"
ENDED = {"COMPLETED": RunStatus.FINISHED, "STOPPED": RunStatus.KILLED, "FAILED": RunStatus.FAILED}


def export_experiment(source: Source, experiment_id: str, tracking_uri: str | None = None,
                      registered_model: str | None = None) -> str:
    """Create or update the run of `experiment_id`; returns its run id."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    exp = source.experiment()
    rounds = sorted((r for r in source.rounds() if r["state"] == "PUBLISHED"), key=lambda r: r["round"])
    run_id = _run(client, exp)
    _log_params(client, run_id, exp)
    _log_metrics(client, run_id, rounds)
    with tempfile.TemporaryDirectory(prefix="fma-mlflow-") as tmp:
        _log_artifacts(client, run_id, source, exp, rounds, Path(tmp))
        _register(client, run_id, source, exp, registered_model, Path(tmp))
    status = ENDED.get(exp["status"])
    client.update_run(run_id, status=RunStatus.to_string(status) if status else "RUNNING")
    return run_id


def _run(client: MlflowClient, exp: dict[str, Any]) -> str:
    found = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
    mlflow_exp = found.experiment_id if found else client.create_experiment(MLFLOW_EXPERIMENT)
    runs = client.search_runs([mlflow_exp], filter_string=f"tags.`{TAG}` = '{exp['id']}'", max_results=2)
    if runs:
        return runs[0].info.run_id
    tags = {TAG: exp["id"], "fma.owner": exp.get("owner", ""), "mlflow.runName": exp["name"]}
    if exp.get("parent"):
        tags["fma.parent"] = f"{exp['parent']['experiment_id']}@{exp['parent']['round']}"
    return client.create_run(mlflow_exp, tags=tags, run_name=exp["name"]).info.run_id


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested settings as dotted MLflow params (`strategy.params.server_momentum`)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k in sorted(value):
            out.update(flatten(f"{prefix}.{k}", value[k]))
        return out
    return {prefix: json.dumps(value) if isinstance(value, list | bool) or value is None else str(value)}


def _log_params(client: MlflowClient, run_id: str, exp: dict[str, Any]) -> None:
    params = {"strategy": exp["strategy"]["name"], **flatten("strategy.params", exp["strategy"].get("params") or {}),
              **flatten("rounds", exp.get("rounds") or {}), "max_update_bytes": str(exp.get("max_update_bytes"))}
    for key in ("update_limits", "aggregation"):
        if isinstance(exp.get(key), dict):
            params.update(flatten(key, exp[key]))
    existing = client.get_run(run_id).data.params
    new = [Param(k[:250], v[:6000]) for k, v in sorted(params.items()) if k[:250] not in existing]
    for start in range(0, len(new), 100):
        client.log_batch(run_id, params=new[start:start + 100])


def round_metrics(r: dict[str, Any]) -> dict[str, float]:
    """One round's step: weighted training metrics, federated evaluation, counts, timing, privacy, cost."""
    out = {f"train.{k}": v for k, v in (r.get("metrics") or {}).items()}
    out.update({f"eval.{k}": v for k, v in (r.get("evaluation_metrics") or {}).items()})
    out.update({f"updates.{k}": r.get(k) for k in ("accepted", "rejected", "late")})
    out["aggregation_seconds"] = r.get("aggregation_seconds")
    privacy = r.get("privacy") or {}
    out.update({f"privacy.{k}": privacy.get(k) for k in ("epsilon", "delta")})
    out.update({f"cost.{k}": v for k, v in (r.get("cost") or {}).items()})
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _log_metrics(client: MlflowClient, run_id: str, rounds: list[dict[str, Any]]) -> None:
    wanted = [(k, v, r["round"]) for r in rounds for k, v in round_metrics(r).items()]
    logged: dict[str, set[int]] = {}
    for key in {k for k, _, _ in wanted}:
        logged[key] = {m.step for m in client.get_metric_history(run_id, key)}
    stamp = int(time.time() * 1000)
    new = [Metric(key, value, stamp, step) for key, value, step in wanted if step not in logged[key]]
    for start in range(0, len(new), 1000):
        client.log_batch(run_id, metrics=new[start:start + 1000])


def _log_artifacts(client: MlflowClient, run_id: str, source: Source, exp: dict[str, Any],
                   rounds: list[dict[str, Any]], tmp: Path) -> None:
    folder = tmp / "manifests"
    folder.mkdir()
    for r in rounds:
        raw = source.read(manifest_key(exp["id"], r["round"]))
        if raw is not None:
            (folder / f"{r['round']:08d}.manifest.json").write_bytes(raw)
    client.log_artifacts(run_id, str(folder), "manifests")
    if rounds:
        final = rounds[-1]["round"]
        model = _read(source, model_key(exp["id"], final))
        path = tmp / "model" / f"{exp['id']}-round-{final}.safetensors"
        path.parent.mkdir()
        path.write_bytes(model)
        client.log_artifact(run_id, str(path), "model")


def _read(source: Source, key: str) -> bytes:
    data = source.read(key)
    if data is None:
        raise VerifyError(f"{key} cannot be read")
    return data


def _register(client: MlflowClient, run_id: str, source: Source, exp: dict[str, Any], name: str | None,
              tmp: Path) -> None:
    """Each FMA registry version of this experiment once, as a version of `name` (default: its FMA name)."""
    for link in exp.get("registry") or []:
        v = source.registry_version(link["name"], link["version"])
        if v is None:
            continue
        target = name or v["name"]
        if not client.search_registered_models(filter_string=f"name = '{target}'"):
            client.create_registered_model(target, tags={"fma.registry_name": v["name"]})
        done = {(mv.tags.get("fma.registry_name"), mv.tags.get("fma.version")): mv.version
                for mv in client.search_model_versions(f"name = '{target}'")}
        number = done.get((v["name"], v["version"])) or _model_version(client, run_id, source, v, target, tmp)
        if v["stage"] in ("staging", "production"):
            client.set_registered_model_alias(target, v["stage"], number)


def _model_version(client: MlflowClient, run_id: str, source: Source, v: dict[str, Any], target: str,
                   tmp: Path) -> str:
    """Log the version's model file under the run and register it as a version of `target`."""
    artifact = f"registry/{v['name']}/{v['version']}"
    path = tmp / artifact.replace("/", "_")
    path.mkdir()
    (path / "model.safetensors").write_bytes(_read(source, model_key(v["experiment_id"], v["round"])))
    client.log_artifacts(run_id, str(path), artifact)
    run = client.get_run(run_id)
    mv = client.create_model_version(
        target, f"{run.info.artifact_uri}/{artifact}", run_id=run_id, description=v.get("notes") or None,
        tags={"fma.registry_name": v["name"], "fma.version": v["version"], "fma.round": str(v["round"]),
              "fma.sha256": v["sha256"], "fma.manifest_sha256": v["manifest"]["sha256"], "fma.stage": v["stage"]})
    return mv.version
