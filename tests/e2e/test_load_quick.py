"""The load benchmark's quick mode (20 clients x 100k params, 3 rounds) as a test: no 5xx, no
update lost or counted twice, every update APPLIED, the published models exact."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("fma_bench_load", ROOT / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quick_load_loses_no_update_and_serves_no_5xx():
    load = _load_benchmark()
    cfg = load.QUICK
    out = load.run(cfg)
    assert out["problems"] == []
    assert out["stats"]["five_xx"] == 0
    assert [(r.accepted, r.rejected, r.late, r.applied, r.distinct) for r in out["rounds"]] == [
        (cfg.clients, 0, 0, cfg.clients, cfg.clients)] * cfg.rounds
    assert all(r.model_ok for r in out["rounds"])
    assert out["final"] == {**out["final"], "status": "COMPLETED", "clients": cfg.clients,
                            "model_version": cfg.rounds}
    saturation = out["saturation"]  # the closed-loop window: every request answered 200
    assert saturation["requests"] > 0 and saturation["errors"] == 0
    assert {r["endpoint"] for r in saturation["rows"]} == {"GET model", "GET round"}
    paced = out["paced"]  # the paced window: about paced_rps x its length requests, every one 200
    assert paced["errors"] == 0 and {r["endpoint"] for r in paced["rows"]} == {"GET model", "GET round"}
    assert paced["requests"] <= cfg.paced_rps * paced["seconds"] + cfg.saturation_clients
    rows = {r["endpoint"]: r for r in out["stats"]["rows"]}
    assert rows["register"]["requests"] >= cfg.clients
    assert rows["PUT update"]["requests"] + rows["POST update (presign)"]["requests"] == cfg.clients * cfg.rounds
