"""Registry, lineage, `fma verify` and `fma export mlflow` on local mode's default connector
(sqlite_fs), through HTTP only, across a restart of the local server on the same state dir.

One module-scoped run: a 3-round experiment, registry versions of its rounds 2 and 3, stage
changes (one production version per name), a fork from round 2 trained 2 more rounds, then a
restart. Every later test reads what the restarted server answers.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from dashboard_local import LocalMode, Seeded, fma_command, seed_experiment
from test_dashboard_lineage import train

pytestmark = pytest.mark.e2e


@dataclass
class Run:
    state: Path
    mode: LocalMode
    parent: Seeded
    fork_id: str
    before_restart: dict = field(default_factory=dict)
    http: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> requests.Response:
        return self.http.request(method, f"{self.mode.url}/v1{path}", json=body, timeout=30,
                                 headers={"Authorization": f"Bearer {token or self.parent.developer_token}"})

    def get(self, path: str, token: str | None = None) -> dict:
        res = self.call("GET", path, token=token)
        assert res.status_code == 200, res.text
        return res.json()

    def download(self, url: str) -> bytes:
        res = self.http.get(url, timeout=30)
        assert res.status_code == 200, res.text
        return res.content

    def model(self, experiment_id: str, n: int) -> bytes:
        return self.download(self.get(f"/experiments/{experiment_id}/models/{n}")["url"])

    def register(self, experiment_id: str, n: int, **extra) -> dict:
        res = self.call("POST", "/registry/digits/versions", {"experiment_id": experiment_id, "round": n, **extra})
        assert res.status_code == 201, res.text
        return res.json()

    def stage(self, version: str, stage: str) -> dict:
        res = self.call("PATCH", f"/registry/digits/versions/{version}", {"stage": stage})
        assert res.status_code == 200, res.text
        return res.json()

    def snapshot(self) -> dict:
        """What the registry and the lineage say, as an analyst reads them."""
        analyst = self.parent.analyst_token
        exps = {i: self.get(f"/experiments/{i}", analyst) for i in (self.parent.experiment_id, self.fork_id)}
        return {"names": self.get("/registry", analyst)["names"],
                "versions": self.get("/registry/digits/versions", analyst)["versions"],
                "lineage": {i: {k: e[k] for k in ("parent", "children", "registry", "status", "model_version",
                                                  "initial_sha256")} for i, e in exps.items()}}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[Run]:
    from fma_client import Developer

    state = tmp_path_factory.mktemp("fma-local-registry")
    mode = LocalMode.start(state)  # the default backend: sqlite_fs
    try:
        parent = seed_experiment(mode.url, mode.admin_token, rounds=3)
        r = Run(state, mode, parent, "")
        r.http.trust_env = False
        assert r.register(parent.experiment_id, 2)["version"] == "1.0.0"
        assert r.register(parent.experiment_id, 3, stage="staging", notes="round 3")["version"] == "1.0.1"
        assert r.stage("1.0.0", "production")["stage"] == "production"
        res = r.call("POST", "/experiments", {"name": "digits-fork", "rounds": {"min_updates": 2, "total_rounds": 2},
                                              "from": {"experiment_id": parent.experiment_id, "round": 2}})
        assert res.status_code == 201, res.text
        assert res.json()["upload"] is None and res.json()["experiment"]["status"] == "RUNNING"
        r.fork_id = res.json()["experiment"]["id"]
        enroll = Developer(mode.url, parent.developer_token).enrollment_token(r.fork_id, max_uses=2)["token"]
        train(mode.url, r.fork_id, enroll, rounds=2)
        assert r.register(r.fork_id, 2, stage="production")["version"] == "1.0.2"
        r.before_restart = r.snapshot() | {"fork_model_0": r.model(r.fork_id, 0),
                                           "parent_model_2": r.model(parent.experiment_id, 2)}
        mode.stop()
        r.mode = LocalMode.start(state)
        assert r.mode.admin_token == mode.admin_token
        yield r
    finally:
        mode.stop()
        if "r" in locals():
            r.mode.stop()


def test_registry_versions_stages_and_one_production_version(run):
    versions = {v["version"]: v for v in run.get("/registry/digits/versions")["versions"]}
    assert list(versions) == ["1.0.2", "1.0.1", "1.0.0"]  # highest first
    assert {k: v["stage"] for k, v in versions.items()} == {"1.0.2": "production", "1.0.1": "staging",
                                                           "1.0.0": "none"}
    rounds = {r["round"]: r for r in run.get(f"/experiments/{run.parent.experiment_id}/rounds")["rounds"]}
    assert versions["1.0.0"]["sha256"] == rounds[2]["model_sha256"]
    assert versions["1.0.0"]["created_by"] == versions["1.0.2"]["created_by"]
    [name] = run.get("/registry")["names"]
    assert (name["name"], name["versions"], name["latest_version"], name["production_version"]) == (
        "digits", 3, "1.0.2", "1.0.2")
    one = run.get("/registry/digits/versions/1.0.1")
    model = run.download(one["url"])
    assert hashlib.sha256(model).hexdigest() == one["sha256"] == rounds[3]["model_sha256"] and len(model) == one["size"]
    assert hashlib.sha256(run.download(one["manifest_url"])).hexdigest() == one["manifest"]["sha256"]


def test_fork_lineage_and_version_zero(run):
    fork = run.get(f"/experiments/{run.fork_id}")
    assert fork["parent"] == {"experiment_id": run.parent.experiment_id, "round": 2}
    assert fork["children"] == [] and fork["status"] == "COMPLETED" and fork["model_version"] == 2
    assert [(v["version"], v["stage"]) for v in fork["registry"]] == [("1.0.2", "production")]
    parent = run.get(f"/experiments/{run.parent.experiment_id}")
    assert parent["parent"] is None and parent["children"] == [{"experiment_id": run.fork_id, "round": 2}]
    assert [(v["version"], v["round"], v["stage"]) for v in parent["registry"]] == [
        ("1.0.0", 2, "none"), ("1.0.1", 3, "staging")]
    assert run.model(run.fork_id, 0) == run.model(run.parent.experiment_id, 2) == run.before_restart["fork_model_0"]
    assert fork["initial_sha256"] == hashlib.sha256(run.before_restart["parent_model_2"]).hexdigest()


def test_registry_and_lineage_survive_the_restart_and_numbering_goes_on(run):
    assert run.snapshot() == {k: run.before_restart[k] for k in ("names", "versions", "lineage")}
    assert run.register(run.fork_id, 1)["version"] == "1.0.3"  # never a number issued before the restart
    dup = run.call("POST", "/registry/digits/versions", {"experiment_id": run.fork_id, "round": 1, "version": "1.0.0"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "VERSION_EXISTS"
    assert run.stage("1.0.3", "production")["stage"] == "production"
    stages = {v["version"]: v["stage"] for v in run.get("/registry/digits/versions")["versions"]}
    assert [v for v, s in stages.items() if s == "production"] == ["1.0.3"] and stages["1.0.2"] == "none"
    other = run.get(f"/experiments/{run.fork_id}")["registry"]
    assert {(v["version"], v["stage"]) for v in other} == {("1.0.2", "none"), ("1.0.3", "production")}


def verify(run: Run, experiment_id: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*fma_command(), "verify", experiment_id, *extra], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("which", ["parent", "fork"])
def test_fma_verify_over_http_passes_with_every_round_rerun(run, which):
    experiment_id = run.parent.experiment_id if which == "parent" else run.fork_id
    done = verify(run, experiment_id, "--url", run.mode.url, "--token", run.parent.developer_token, "--rerun-all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: experiment {experiment_id}")
    assert done.stdout.count("re-run gives the same bytes") == (3 if which == "parent" else 2)
    assert "registry digits 1.0.1: round 3" in done.stdout or which == "fork"


def test_fma_verify_over_http_reports_an_edited_manifest(run):
    """Edit the bytes of the parent's round 2 manifest on disk: verify names it, then passes again."""
    with sqlite3.connect(run.state / "fma.sqlite3") as db:
        [(version_id,)] = db.execute("SELECT version_id FROM objects WHERE key = ? ORDER BY seq DESC LIMIT 1",
                                     (f"models/{run.parent.experiment_id}/00000002.manifest.json",)).fetchall()
    path = run.state / "objects" / version_id[:2] / version_id
    original = path.read_bytes()
    args = ("--url", run.mode.url, "--token", run.parent.developer_token)
    try:
        path.write_bytes(original.replace(b'"round"', b'"round" ', 1))
        done = verify(run, run.parent.experiment_id, *args)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "round 2: manifest sha256" in done.stdout and "edited or replaced" in done.stdout
        assert "round 3: chain broken" in done.stdout and "registry digits 1.0.0: points at manifest" in done.stdout
    finally:
        path.write_bytes(original)
    assert verify(run, run.parent.experiment_id, *args).returncode == 0


def test_fma_export_mlflow_over_http_logs_the_parent_and_its_registry_versions(run, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):  # a second export updates the same run
        done = subprocess.run([*fma_command(), "export", "mlflow", run.parent.experiment_id, "--url", run.mode.url,
                               "--token", run.parent.developer_token, "--tracking-uri", uri, "--registered-model",
                               "digits-local"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    [one] = client.search_runs([client.get_experiment_by_name("fma").experiment_id],
                               f"tags.`fma.experiment_id` = '{run.parent.experiment_id}'")
    assert [m.step for m in client.get_metric_history(one.info.run_id, "train.loss")] == [1, 2, 3]
    versions = client.search_model_versions("name = 'digits-local'")
    assert sorted(v.tags["fma.version"] for v in versions) == ["1.0.0", "1.0.1"]


def test_fma_verify_reruns_server_state_and_dp_noise_from_the_state_dir(run):
    """FedAdam keeps server state (not served by the API) and central DP noise is seeded by the
    server's key: over --url the re-run says which it cannot read; --state-dir re-runs both."""
    import numpy as np

    from fma_client import Developer

    dev = Developer(run.mode.url, run.parent.developer_token)
    exp = dev.create_experiment("adam-dp", {"w": np.zeros((3, 4), np.float32)}, rounds={"min_updates": 2,
                                "total_rounds": 2}, strategy={"name": "fedadam", "params": {
                                    "dp": {"clipping_norm": 1.0, "noise_multiplier": 0.5}}})
    train(run.mode.url, exp["id"], dev.enrollment_token(exp["id"], max_uses=2)["token"], rounds=2)
    over_http = verify(run, exp["id"], "--url", run.mode.url, "--token", run.parent.developer_token, "--rerun-all")
    assert over_http.returncode == 1, over_http.stdout + over_http.stderr
    assert "round 1: re-run failed: RerunError: round 1 adds DP noise seeded by the deployment's secret key" in (
        over_http.stdout)
    assert "round 2: re-run failed: RerunError: the server state of round 1" in over_http.stdout
    assert over_http.stdout.count("  x ") == 2  # nothing else is wrong with the history
    local = verify(run, exp["id"], "--state-dir", str(run.state), "--rerun-all")
    assert local.returncode == 0, local.stdout + local.stderr
    assert local.stdout.count("re-run gives the same bytes") == 2
    parent = verify(run, run.parent.experiment_id, "--state-dir", str(run.state), "--rerun-all")
    assert parent.returncode == 0 and "registry digits 1.0.1: round 3" in parent.stdout
    missing = verify(run, exp["id"], "--state-dir", str(run.state / "nothing-here"))
    assert missing.returncode == 2 and "is not a local-mode state directory" in missing.stderr
