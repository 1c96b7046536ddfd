"""Local mode's gateway serves model data only through signed single-object grants: a grant for
one key, size and time can be used for exactly that, and a refused transfer changes nothing."""

from __future__ import annotations

import pytest
import requests

from fma.adapters.sqlite_fs import open_connector
from fma.local.gateway import Gateway
from fma.local.objects import ObjectRoutes

KEY = "updates/e1/00000001/c-1.safetensors"
DATA = b"x" * 100


@pytest.fixture
def local(tmp_path):
    gateway = Gateway("127.0.0.1", 0)
    conn = open_connector(tmp_path / "state", gateway.url)
    gateway.start(ObjectRoutes(conn.store, conn.signer))
    yield conn
    gateway.stop()
    conn.close()


def state(conn) -> tuple:
    """Everything a transfer could change: objects, their versions, the outbox."""
    with conn.db.read() as tx:
        objects = tx.conn.execute("SELECT key, version_id, size FROM objects ORDER BY seq").fetchall()
    return tuple(objects), conn.events.pending()


def upload(grant: dict, data: bytes, key: str | None = None) -> requests.Response:
    fields = dict(grant["fields"]) | ({"key": key} if key else {})
    return requests.post(grant["url"], data=fields, files={"file": ("u", data)}, timeout=10)


def test_a_valid_grant_stores_exactly_its_object_and_announces_it(local):
    grant = local.store.presigned_post(KEY, len(DATA), len(DATA), 60)
    assert upload(grant, DATA).status_code == 204
    assert local.store.get(KEY) == DATA
    assert [e.key for e in local.events.receive(10)] == [KEY]
    got = requests.get(local.store.presigned_get(KEY, 60), timeout=10)
    assert (got.status_code, got.content) == (200, DATA)


@pytest.mark.parametrize("tamper", ["other-key", "larger", "smaller", "expired", "altered", "download-grant",
                                    "no-grant"])
def test_a_tampered_upload_is_refused_and_changes_nothing(local, tamper):
    local.store.put("updates/e1/00000001/c-2.safetensors", b"victim")
    before = state(local)
    grant = local.store.presigned_post(KEY, len(DATA), len(DATA), 60)
    key, data = None, DATA
    if tamper == "other-key":
        key = "updates/e1/00000001/c-2.safetensors"
    elif tamper == "larger":
        data = DATA + b"!"
    elif tamper == "smaller":
        data = DATA[:-1]
    elif tamper == "expired":
        local.signer.clock = lambda: 10**10
    elif tamper == "altered":
        url, _, token = grant["url"].partition("grant=")
        grant = grant | {"url": url + "grant=" + token[:-2] + ("AA" if not token.endswith("AA") else "BB")}
    elif tamper == "download-grant":
        grant = grant | {"url": grant["url"].split("?")[0] + "?grant=" +
                         local.store.presigned_get(KEY, 60).split("grant=")[1]}
    else:
        grant = grant | {"url": grant["url"].split("?")[0]}
    reply = upload(grant, data, key)
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"]["code"] == "GRANT_REFUSED"
    assert state(local) == before
    assert local.store.get("updates/e1/00000001/c-2.safetensors") == b"victim"


def test_download_grants_read_one_object_only(local):
    local.store.put(KEY, DATA)
    local.store.put("models/e1/00000000.safetensors", b"model")
    url = local.store.presigned_get("models/e1/00000000.safetensors", 60)
    other = url.replace("models/e1/00000000.safetensors", KEY.replace("/", "%2F"))
    assert requests.get(other, timeout=10).status_code == 403
    upload_grant = local.store.presigned_post(KEY, 1, 10, 60)["url"].split("grant=")[1]
    assert requests.get(url.split("grant=")[0] + "grant=" + upload_grant, timeout=10).status_code == 403
    assert requests.get(url, timeout=10).content == b"model"


def test_malformed_and_oversized_uploads_are_refused(local):
    before = state(local)
    grant = local.store.presigned_post(KEY, len(DATA), len(DATA), 60)
    bad = requests.post(grant["url"], data=b"not a form", headers={"Content-Type": "multipart/form-data; boundary=x"},
                        timeout=10)
    assert bad.status_code == 400
    huge = requests.post(grant["url"], data=b"x" * (200 << 10),
                         headers={"Content-Type": "multipart/form-data; boundary=x"}, timeout=10)
    assert huge.status_code == 413
    assert state(local) == before


def test_an_upload_grant_bound_to_a_sha256_takes_only_those_bytes(local):
    import hashlib

    grant = local.store.presigned_post(KEY, len(DATA), len(DATA), 60, sha256=hashlib.sha256(DATA).hexdigest())
    before = state(local)
    refused = upload(grant, b"y" * len(DATA))
    assert refused.status_code == 403 and state(local) == before
    assert upload(grant, DATA).status_code == 204
    assert local.store.get(KEY) == DATA


def test_a_download_grant_of_one_version_serves_that_version_only(local):
    """The round artifacts route pins update versions (`fma verify --url`): a newer upload of the
    same key does not change what a pinned grant serves, and the pin cannot be moved."""
    local.store.put(KEY, b"accepted bytes")
    _, pinned = local.store.get_versioned(KEY)
    local.store.put(KEY, b"a later upload")
    url = local.store.presigned_get(KEY, 60, pinned)
    assert requests.get(url, timeout=10).content == b"accepted bytes"
    assert requests.get(local.store.presigned_get(KEY, 60), timeout=10).content == b"a later upload"
    mac = url.split("grant=")[1].split(".")[1]
    other = local.store.presigned_get(KEY, 60, "0" * 32).split("grant=")[1].split(".")[0]
    assert requests.get(url.split("grant=")[0] + f"grant={other}.{mac}", timeout=10).status_code == 403
    missing = requests.get(local.store.presigned_get(KEY, 60, "0" * 32), timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NO_SUCH_OBJECT"
