"""Lineage end to end on real local mode: fork round 2 of a finished experiment, train the fork
two more rounds, verify both histories over HTTP, and see the lineage and registry in the browser.

The browser part needs /usr/bin/chromium and playwright (skipped otherwise); the fork part does not.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from dashboard_local import LocalMode, Seeded, fma_command, seed_experiment
from test_dashboard import browser, page, sign_in, sync_playwright  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e
DOCS = Path(__file__).resolve().parents[2] / "docs"


@dataclass
class Forked:
    mode: LocalMode
    parent: Seeded
    fork_id: str
    http: requests.Session

    def get(self, path: str, token: str | None = None) -> dict:
        res = self.http.get(f"{self.mode.url}/v1{path}", headers={"Authorization": f"Bearer {token or self.dev}"},
                            timeout=30)
        assert res.status_code == 200, res.text
        return res.json()

    @property
    def dev(self) -> str:
        return self.parent.developer_token

    def download(self, experiment_id: str, n: int) -> bytes:
        url = self.get(f"/experiments/{experiment_id}/models/{n}")["url"]
        res = self.http.get(url, timeout=30)
        assert res.status_code == 200
        return res.content


def train(url: str, experiment_id: str, enroll: str, rounds: int) -> None:
    from fma_client import Client

    clients = [Client(url, experiment_id, enrollment_token=enroll, name=f"fork-{i}", poll_interval=0.3) for i in (1, 2)]
    for n in range(1, rounds + 1):
        for i, client in enumerate(clients):
            weights, current, _ = client.get_model()
            assert current == n
            client.submit({k: v + np.float32(0.05 * (i + 1)) for k, v in weights.items()}, 30 + 10 * i,
                          {"loss": 0.5 / n}, timeout=60)
        clients[0].wait_for_round(n, timeout=120)


@pytest.fixture(scope="module")
def forked(tmp_path_factory) -> Iterator[Forked]:
    from fma_client import Developer

    mode = LocalMode.start(tmp_path_factory.mktemp("fma-lineage"))  # the default backend: sqlite_fs
    try:
        parent = seed_experiment(mode.url, mode.admin_token, rounds=3)
        http = requests.Session()
        http.trust_env = False
        res = http.post(f"{mode.url}/v1/experiments", headers={"Authorization": f"Bearer {parent.developer_token}"},
                        json={"name": "digits-fork", "rounds": {"min_updates": 2, "total_rounds": 2},
                              "from": {"experiment_id": parent.experiment_id, "round": 2}}, timeout=30)
        assert res.status_code == 201, res.text
        fork_id = res.json()["experiment"]["id"]
        enroll = Developer(mode.url, parent.developer_token).enrollment_token(fork_id, max_uses=2)["token"]
        train(mode.url, fork_id, enroll, rounds=2)
        auth = {"Authorization": f"Bearer {parent.developer_token}"}
        for exp, n, stage in ((parent.experiment_id, 3, "staging"), (fork_id, 2, "production")):
            res = http.post(f"{mode.url}/v1/registry/digits/versions", headers=auth, timeout=30,
                            json={"experiment_id": exp, "round": n, "stage": stage})
            assert res.status_code == 201, res.text
        yield Forked(mode, parent, fork_id, http)
    finally:
        mode.stop()


def test_fork_version_zero_is_the_parent_round_two_and_it_trains_two_more_rounds(forked):
    fork = forked.get(f"/experiments/{forked.fork_id}")
    assert fork["status"] == "COMPLETED" and fork["model_version"] == 2
    assert fork["parent"] == {"experiment_id": forked.parent.experiment_id, "round": 2}
    parent_round_two = forked.download(forked.parent.experiment_id, 2)
    assert forked.download(forked.fork_id, 0) == parent_round_two
    assert fork["initial_sha256"] == hashlib.sha256(parent_round_two).hexdigest()
    rounds = forked.get(f"/experiments/{forked.fork_id}/rounds")["rounds"]
    assert [r["state"] for r in sorted(rounds, key=lambda r: r["round"])] == ["PUBLISHED", "PUBLISHED"]
    parent = forked.get(f"/experiments/{forked.parent.experiment_id}")
    assert parent["children"] == [{"experiment_id": forked.fork_id, "round": 2}]


@pytest.mark.parametrize("which", ["parent", "fork"])
def test_fma_verify_over_http_passes_with_every_round_rerun(forked, which):
    experiment_id = forked.parent.experiment_id if which == "parent" else forked.fork_id
    done = subprocess.run([*fma_command(), "verify", experiment_id, "--url", forked.mode.url, "--token", forked.dev,
                           "--rerun-all"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: experiment {experiment_id}")
    assert "re-run gives the same bytes" in done.stdout and "registry digits" in done.stdout


def test_dashboard_draws_the_lineage_and_the_registry_versions(page, forked):  # noqa: F811 (fixture)
    sign_in(page, forked.mode.url, forked.parent.analyst_token)
    page.goto(f"{forked.mode.url}/#/experiments/{forked.fork_id}")
    graph = page.locator("#lineage svg.lineage")
    graph.wait_for()
    # the fork: its parent is a link to the parent's page; the production version is listed
    parent_node = graph.locator("a[data-node='parent']")
    assert parent_node.count() == 1 and forked.parent.experiment_id[:16] in parent_node.inner_html()
    assert "forked at round 2" in graph.inner_html()
    page.locator("#lineage").screenshot(path=str(DOCS / "dashboard-lineage.png"))
    row = page.locator("#lineage tr[data-registry='digits@1.0.1']")
    assert row.get_attribute("data-stage") == "production" and "production" in row.inner_text()
    # following the parent link shows the parent, with the fork drawn as its child
    parent_node.click()
    page.wait_for_url(f"**/#/experiments/{forked.parent.experiment_id}")
    page.locator("#lineage a[data-node='child']").wait_for()
    assert page.locator("#lineage a[data-node='parent']").count() == 0
    assert page.locator(f"#lineage li[data-child='{forked.fork_id}']").count() == 1
    assert page.locator("#lineage tr[data-registry='digits@1.0.0']").get_attribute("data-stage") == "staging"
    with page.expect_download() as download:
        page.get_by_role("button", name="Download digits 1.0.0").click()
    model = forked.download(forked.parent.experiment_id, 3)
    assert Path(download.value.path()).read_bytes() == model
    assert page.console.unexpected() == []


def test_fma_export_mlflow_over_http_logs_the_fork(forked, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([*fma_command(), "export", "mlflow", forked.fork_id, "--url", forked.mode.url, "--token",
                           forked.dev, "--tracking-uri", uri], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("fma").experiment_id],
                               f"tags.`fma.experiment_id` = '{forked.fork_id}'")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train.loss")] == [1, 2]
    assert run.data.tags["fma.parent"] == f"{forked.parent.experiment_id}@2"
    [mv] = client.search_model_versions("name = 'digits'")
    assert mv.tags["fma.version"] == "1.0.1"
