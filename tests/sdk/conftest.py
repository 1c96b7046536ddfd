"""Fixtures for the SDK tests: a mocked HTTP layer (`responses`) and a fake clock."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import responses
from safetensors.numpy import save

from fma_client import Client, Developer

API = "http://api.test"
S3 = "http://s3.test"
EXP = "exp-1"
MODEL = f"{API}/v1/experiments/{EXP}/model"


class FakeTime:
    """`sleep` advances `clock` instantly, so waits and backoffs cost no wall time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> Path:
    """Each test gets an empty config folder: saved registrations never leak between tests."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client(fake_time: FakeTime, http: responses.RequestsMock) -> Client:
    return Client(
        API, EXP, token="ctok", client_id="c1",
        sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(0),
    )  # fmt: skip


@pytest.fixture
def developer(fake_time: FakeTime, http: responses.RequestsMock) -> Developer:
    return Developer(API, "dtok", sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(0))


def model_bytes(scale: float = 1.0) -> bytes:
    """A two-tensor float32 model: `w` (2x3) and `b` (3,)."""
    return save({
        "w": np.full((2, 3), scale, dtype=np.float32),
        "b": np.arange(3, dtype=np.float32) * scale,
    })  # fmt: skip


def error_body(code: str, message: str = "nope", **details: object) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def serve_model(http, data: bytes, round: int | None = 1, status: str = "RUNNING") -> str:
    """Register the model endpoint and its presigned download; returns the sha256."""
    sha = hashlib.sha256(data).hexdigest()
    body = {
        "round": round, "version": 0, "sha256": sha, "url": f"{S3}/models/{sha}",
        "client_config": {"lr": 0.1}, "status": status,
    }  # fmt: skip
    http.get(MODEL, json=body, headers={"ETag": f'"{sha}"'})
    http.get(f"{S3}/models/{sha}", body=data)
    return sha


def s3_calls(http) -> int:
    return sum(call.request.url.startswith(S3) for call in http.calls)
