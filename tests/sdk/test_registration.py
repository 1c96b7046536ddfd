"""A client saves its registration (0600, under the user's config folder or a named file) and a
restarted client resumes with it without using the enrollment token again."""

from __future__ import annotations

import json
import stat

import pytest
import responses

from fma_client import Client, FmaError

from .conftest import API, EXP, model_bytes, serve_model

CLIENTS = f"{API}/v1/experiments/{EXP}/clients"


@pytest.fixture
def server(http):
    """Registration hands out c1, c2, ... and counts the uses of the enrollment token."""
    issued: list[str] = []

    def register(request):
        issued.append(f"c{len(issued) + 1}")
        return 201, {}, json.dumps({"client_id": issued[-1], "token": f"token-{issued[-1]}"})

    http.add_callback(responses.POST, CLIENTS, register)
    serve_model(http, model_bytes())
    return issued


def bearer(http) -> str:
    """The token of the last API call (downloads from S3 carry none)."""
    return [c.request.headers["Authorization"] for c in http.calls if c.request.url.startswith(API)][-1]


def saved_files(config_home) -> list:
    return sorted((config_home / "fma" / "clients").glob("*.json"))


def test_a_restarted_client_resumes_its_registration_without_using_the_token_again(http, server, config_home):
    with Client(API, EXP, enrollment_token="enroll") as first:
        first.get_model()
    [path] = saved_files(config_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    saved = json.loads(path.read_text())
    assert (saved["client_id"], saved["token"], saved["experiment_id"]) == ("c1", "token-c1", EXP)

    again = Client(API + "/v1", EXP, enrollment_token="enroll")  # the same server, written the other way
    again.get_model()
    assert server == ["c1"]  # one use of the enrollment token, not two
    assert again.client_id == "c1" and bearer(http) == "Bearer token-c1"


def test_clients_running_at_once_on_one_machine_get_their_own_identities(http, server, config_home):
    a, b = Client(API, EXP, enrollment_token="enroll"), Client(API, EXP, enrollment_token="enroll")
    a.get_model()
    b.get_model()
    assert (a.client_id, b.client_id) == ("c1", "c2") and len(saved_files(config_home)) == 2
    a.close()
    b.close()

    resumed = [Client(API, EXP, enrollment_token="enroll") for _ in range(2)]
    for c in resumed:
        c.get_model()
    assert sorted(c.client_id for c in resumed) == ["c1", "c2"] and server == ["c1", "c2"]


def test_a_named_client_keeps_its_own_identity(http, server):
    for name in ("site-a", "site-b"):
        with Client(API, EXP, enrollment_token="enroll", name=name) as c:
            c.get_model()
    with Client(API, EXP, enrollment_token="enroll", name="site-b") as c:
        c.get_model()
        assert c.client_id == "c2"
    assert server == ["c1", "c2"]


def test_a_registration_file_named_by_the_user_is_used_and_is_exclusive(http, server, tmp_path):
    path = tmp_path / "me.json"
    first = Client(API, EXP, enrollment_token="enroll", registration_file=path)
    first.get_model()
    assert json.loads(path.read_text())["client_id"] == "c1" and stat.S_IMODE(path.stat().st_mode) == 0o600

    with pytest.raises(FmaError, match=r"me.json is in use by another running client"):
        Client(API, EXP, enrollment_token="enroll", registration_file=path).get_model()
    first.close()
    with Client(API, EXP, enrollment_token="enroll", registration_file=path) as again:
        again.get_model()
        assert again.client_id == "c1" and server == ["c1"]


def test_a_file_of_another_experiment_is_refused_and_left_alone(http, server, tmp_path):
    path = tmp_path / "me.json"
    path.write_text(json.dumps({"base_url": API, "experiment_id": "other", "client_id": "x", "token": "y"}))

    with pytest.raises(FmaError, match="belongs to experiment 'other'"):
        Client(API, EXP, enrollment_token="enroll", registration_file=path).get_model()
    assert json.loads(path.read_text())["client_id"] == "x" and server == []


def test_an_unknown_saved_token_registers_again_once(http, server, tmp_path):
    """401: the server no longer knows the saved token (expired, or a wiped local state)."""
    path = tmp_path / "me.json"
    path.write_text(json.dumps({"base_url": API, "experiment_id": EXP, "client_id": "old", "token": "revoked"}))

    def model(request):
        if request.headers["Authorization"] == "Bearer revoked":
            return 401, {}, json.dumps({"error": {"code": "UNAUTHORIZED", "message": "revoked"}})
        return 200, {}, json.dumps({"round": 1, "version": 0, "sha256": None, "status": "RUNNING"})

    http.replace(responses.GET, f"{API}/v1/experiments/{EXP}/model")
    http.remove(responses.GET, f"{API}/v1/experiments/{EXP}/model")
    http.add_callback(responses.GET, f"{API}/v1/experiments/{EXP}/model", model)

    client = Client(API, EXP, enrollment_token="enroll", registration_file=path)
    client.get_model()
    assert client.client_id == "c1" and server == ["c1"]
    assert json.loads(path.read_text())["token"] == "token-c1"


@pytest.mark.parametrize("code", ["TOKEN_REVOKED", "CLIENT_REVOKED", "FORBIDDEN"])
def test_a_revoked_client_never_registers_itself_again(http, server, tmp_path, code):
    """A client its developer revoked stays out: re-registering with the enrollment token would
    undo the revocation (403 from the authorizer, the API, or API Gateway's bare deny)."""
    path = tmp_path / "me.json"
    path.write_text(json.dumps({"base_url": API, "experiment_id": EXP, "client_id": "old", "token": "revoked"}))
    body = {"error": {"code": code, "message": "revoked"}} if code != "FORBIDDEN" else {"message": "Forbidden"}
    http.replace(responses.GET, f"{API}/v1/experiments/{EXP}/model", status=403, json=body)

    client = Client(API, EXP, enrollment_token="enroll", registration_file=path)
    with pytest.raises(FmaError) as err:
        client.get_model()
    assert getattr(err.value, "status", None) == 403
    assert server == [] and json.loads(path.read_text())["client_id"] == "old"


def test_persistence_can_be_turned_off(http, server, config_home):
    Client(API, EXP, enrollment_token="enroll", persist_registration=False).get_model()
    Client(API, EXP, enrollment_token="enroll", persist_registration=False).get_model()
    assert server == ["c1", "c2"] and not (config_home / "fma").exists()


def test_a_torn_file_is_replaced_by_a_new_registration(http, server, tmp_path):
    path = tmp_path / "me.json"
    path.write_text('{"client_id": "c')

    with Client(API, EXP, enrollment_token="enroll", registration_file=path) as client:
        client.get_model()
    assert json.loads(path.read_text())["client_id"] == "c1"
