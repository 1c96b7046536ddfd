"""Local mode's gateway takes multipart parts only through signed part grants: a grant names one
part (key, upload id, number) of one exact size, and a refused PUT stores no part."""

from __future__ import annotations

import pytest
import requests

from fma.adapters.sqlite_fs import open_connector
from fma.adapters.sqlite_fs.grants import PART
from fma.local.gateway import Gateway
from fma.local.objects import ObjectRoutes

KEY = "updates/e1/00000001/c-1.safetensors"


@pytest.fixture
def local(tmp_path):
    gateway = Gateway("127.0.0.1", 0)
    conn = open_connector(tmp_path / "state", gateway.url)
    gateway.start(ObjectRoutes(conn.store, conn.signer))
    yield conn
    gateway.stop()
    conn.close()


def test_a_part_grant_stores_exactly_its_part_and_answers_its_etag(local):
    upload_id = local.store.multipart_create(KEY)
    resp = requests.put(local.store.multipart_part_url(KEY, upload_id, 2, 300, 60), data=b"p" * 300, timeout=10)
    assert resp.status_code == 200
    [part] = local.store.multipart_parts(KEY, upload_id)
    assert (part.part_number, part.size, f'"{part.etag}"') == (2, 300, resp.headers["ETag"])


@pytest.mark.parametrize("tamper", ["larger", "smaller", "expired", "altered", "upload-grant", "other-upload",
                                    "no-grant", "completed"])
def test_a_tampered_part_is_refused_and_stores_nothing(local, tamper):
    upload_id = local.store.multipart_create(KEY)
    url, data = local.store.multipart_part_url(KEY, upload_id, 1, 300, 60), b"p" * 300
    if tamper == "larger":
        data += b"!"
    elif tamper == "smaller":
        data = data[:-1]
    elif tamper == "expired":
        url = local.store.multipart_part_url(KEY, upload_id, 1, 300, -5)
    elif tamper == "altered":
        url = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    elif tamper == "upload-grant":
        url = local.store.presigned_post(KEY, 300, 300, 60)["url"].replace("/objects?", "/objects/parts?")
    elif tamper == "other-upload":
        grant = local.signer.sign(PART, KEY, 60, 300, 300, upload_id="0" * 32, part_number=1)
        url = f"{local.store.public_url}/objects/parts?grant={grant}"
    elif tamper == "no-grant":
        url = f"{local.store.public_url}/objects/parts"
    elif tamper == "completed":
        local.store.multipart_abort(KEY, upload_id)
    resp = requests.put(url, data=data, timeout=10)
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["error"]["code"] in ("GRANT_REFUSED", "PART_SIZE", "NO_SUCH_UPLOAD")
    assert local.store.multipart_parts(KEY, upload_id) in ([], None)
