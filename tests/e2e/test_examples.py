"""The examples run as a user runs them, in quick mode: as scripts, against local mode.

One local mode is shared through `--url/--admin-token`; the Flower example starts its own,
which covers the path a first-time user takes (no flags at all).
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys

import pytest
from local_mode import ROOT, local_mode

pytestmark = pytest.mark.e2e
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def fma(tmp_path_factory):
    with local_mode(tmp_path_factory.mktemp("examples") / "state") as (url, admin):
        yield url, admin


def run_example(script: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run an example in its own process group; on timeout the whole group is killed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FMA_"))}
    command = [sys.executable, str(EXAMPLES / script), "--quick", *args]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{script} did not finish within {timeout:.0f} s:\n{out}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def test_digits_numpy_example_trains_and_improves_accuracy(fma):
    url, admin = fma
    result = run_example("digits_numpy/train.py", "--url", url, "--admin-token", admin)
    assert result.returncode == 0, result.stdout
    assert "round 2: 3 updates" in result.stdout
    assert "test accuracy: initial" in result.stdout


def test_flower_sklearn_example_starts_local_mode_itself_and_reports_evaluations():
    pytest.importorskip("flwr")
    result = run_example("flower_sklearn/run.py")
    assert result.returncode == 0, result.stdout
    assert "started FMA local mode at http://127.0.0.1:" in result.stdout
    assert "round 2: 3 updates; federated evaluation of its model on 3 clients" in result.stdout


def test_pytorch_example_trains_a_flower_torch_client(fma):
    assert importlib.util.find_spec("torch") is not None, "torch is installed by `make install` (fma-client[torch])"
    url, admin = fma
    result = run_example("pytorch_mnist_like/run.py", "--url", url, "--admin-token", admin)
    assert result.returncode == 0, result.stdout
    assert "torch is not installed" not in result.stdout
    assert "round 2: federated evaluation accuracy" in result.stdout


def test_flower_pytorch_batchnorm_example_keeps_the_0d_buffer_under_fedavg(fma):
    url, admin = fma
    result = run_example("flower_pytorch_batchnorm/run.py", "--url", url, "--admin-token", admin)
    assert result.returncode == 0, result.stdout
    assert "round 2: federated evaluation accuracy" in result.stdout
    assert re.search(r"final model: bn1.num_batches_tracked = \d+ \(shape \[\], int64\)", result.stdout), result.stdout
    assert "final model loaded with numpy_to_state_dict: accuracy on all digits" in result.stdout
