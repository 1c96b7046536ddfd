"""Issue 11: local mode leaks nothing to other users of the machine or to an HTTP client: every
file it writes is 0600 and every folder 0700, and its `Server` header names no interpreter."""

from __future__ import annotations

import stat

import numpy as np
import pytest
import requests
from local_mode import local_mode

from fma_client import Developer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_state_files_are_owner_only_and_server_header_names_no_python(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "left-by-an-older-version").write_text("x")
    (state / "left-by-an-older-version").chmod(0o644)
    with local_mode(state) as (url, admin):
        dev = Developer(url, Developer(url, admin).create_token("developer")["token"])
        exp = dev.create_experiment("files", {"w": np.zeros(3, np.float32)}, rounds={"min_updates": 1})
        dev.enrollment_token(exp["id"], max_uses=1)
        response = requests.get(f"{url}/v1/health", timeout=10)
        assert response.headers["Server"] == "fma-local"
        assert "python" not in str(response.headers).lower()
    paths = [state, *state.rglob("*")]
    assert len(paths) >= 3, paths  # the admin token and the recording at least
    loose = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)}
    assert not loose, loose
