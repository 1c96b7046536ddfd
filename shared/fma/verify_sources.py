"""Where `fma verify` and `fma export mlflow` read an experiment's history from.

`StoreSource` reads the table and the bucket directly (an operator's AWS credentials, or moto),
or a local-mode state directory (`local_source`: its SQLite file, objects and DP noise key);
`HttpSource` reads through the API with a developer or admin token: the experiment detail, its
rounds, and each round's objects through presigned URLs of `GET .../rounds/{n}/artifacts`.
Both answer in the API's public shapes, so the checks cannot tell them apart.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from fma.services.deps import Deps

OBJECT_KEY = re.compile(r"^(?:models|state|updates)/(?P<exp>[A-Za-z0-9-]{1,64})/(?P<n>\d{8})[./]")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DP_KEY_FILE = "dp-noise.key"  # where local mode keeps its DP noise key (fma.local.app)


class VerifyError(RuntimeError):
    """The history cannot be read at all (unknown experiment, refused token, unreachable API)."""


class Source(Protocol):
    def experiment(self) -> dict[str, Any]: ...
    def rounds(self) -> list[dict[str, Any]]: ...
    def read(self, key: str, version_id: str | None = None) -> bytes | None: ...
    def registry_version(self, name: str, version: str) -> dict[str, Any] | None: ...


class StoreSource:
    """The table and the bucket, through the same adapters the functions use."""

    def __init__(self, deps: Deps, experiment_id: str):
        self.deps, self.experiment_id = deps, experiment_id
        #: the DP noise key, when this source holds it (verify_rerun re-creates a round's noise)
        self.secrets = deps.secrets

    def experiment(self) -> dict[str, Any]:
        from fma.services.lineage import links

        exp = self.deps.repo.get_experiment(self.experiment_id)
        if exp is None:
            raise VerifyError(f"experiment {self.experiment_id} not found in the table")
        return exp.to_public() | links(self.deps, self.experiment_id)

    def rounds(self) -> list[dict[str, Any]]:
        out, cursor = [], None
        while True:
            page = self.deps.repo.list_rounds(self.experiment_id, 100, cursor)
            for r in page.items:
                out.append({"round": r.round, "state": str(r.state), "model_sha256": r.model_sha256,
                            "manifest_sha256": (r.info or {}).get("manifest_sha256"), "metrics": r.metrics or {},
                            "accepted": r.accepted, "rejected": r.rejected, "late": r.late,
                            "aggregation_seconds": r.aggregation_seconds, "privacy": (r.info or {}).get("privacy"),
                            "evaluation_metrics": _weighted(self.deps.repo.list_evaluations(self.experiment_id,
                                                                                            r.round))})
            cursor = page.next_cursor
            if not cursor:
                return out

    def read(self, key: str, version_id: str | None = None) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.deps.store.get(key, version_id)
        except LookupError:  # the embedded stores' "no such key or version"
            return None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchVersion", "404", "NotFound",
                                                             "InvalidArgument"):
                return None
            raise

    def registry_version(self, name: str, version: str) -> dict[str, Any] | None:
        v = self.deps.repo.get_registry_version(name, version)
        return v.to_public() if v else None


def local_source(state_dir: Path, experiment_id: str) -> StoreSource:
    """A local-mode state directory read in place (the server may keep running: SQLite in WAL mode),
    with its DP noise key file when there is one, so `--rerun` re-creates noised rounds too."""
    from fma.adapters.secret_stores import FileSecretStore
    from fma.adapters.sqlite_fs import DATABASE, open_connector

    if not (state_dir / DATABASE).is_file():
        raise VerifyError(f"{state_dir} is not a local-mode state directory (no {DATABASE})")
    conn = open_connector(state_dir, "http://127.0.0.1:0")
    key = state_dir / DP_KEY_FILE
    return StoreSource(Deps(repo=conn.repo, store=conn.store, secrets=FileSecretStore(key) if key.is_file() else None),
                       experiment_id)


def _weighted(evals: list) -> dict[str, float]:
    from fma.services.rounds_view import weighted

    return weighted(evals)


class HttpSource:
    """The API with a bearer token; presigned URLs are fetched without it."""

    def __init__(self, url: str, token: str, experiment_id: str, timeout: float = 60.0):
        self.base = url.rstrip("/").removesuffix("/v1") + "/v1"
        self.token, self.experiment_id, self.timeout = token, experiment_id, timeout
        host = urllib.parse.urlsplit(self.base).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
        self.opener = urllib.request.build_opener(*handlers)
        self._artifacts: dict[tuple[str, int], dict[tuple[str, str | None], str]] = {}

    def _get(self, url: str, auth: bool = True) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        try:
            with self.opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise VerifyError(f"cannot reach {url.split('?')[0]}: {exc}") from None

    def _api(self, path: str, missing_ok: bool = False) -> Any:
        status, body = self._get(self.base + path)
        if status == 404 and missing_ok:
            return None
        if status != 200:
            try:
                error = json.loads(body)["error"]
                detail = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                detail = body[:200].decode(errors="replace")
            raise VerifyError(f"GET {path} answered {status} ({detail})")
        return json.loads(body)

    def experiment(self) -> dict[str, Any]:
        return self._api(f"/experiments/{self.experiment_id}")

    def rounds(self) -> list[dict[str, Any]]:
        out, cursor = [], None
        while True:
            query = urllib.parse.urlencode({"limit": 100, **({"cursor": cursor} if cursor else {})})
            page = self._api(f"/experiments/{self.experiment_id}/rounds?{query}")
            out += page["rounds"]
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def read(self, key: str, version_id: str | None = None) -> bytes | None:
        m = OBJECT_KEY.match(key)
        if m is None:
            return None
        urls = self._round_objects(m["exp"], int(m["n"]))
        url = urls.get((key, version_id)) or (urls.get((key, None)) if version_id is None else None)
        if url is None:
            return None
        status, body = self._get(url, auth=False)
        return body if status == 200 else None

    def _round_objects(self, experiment_id: str, n: int) -> dict[tuple[str, str | None], str]:
        if (experiment_id, n) not in self._artifacts:
            found = self._api(f"/experiments/{experiment_id}/rounds/{n}/artifacts", missing_ok=True)
            self._artifacts[(experiment_id, n)] = {(o["key"], o.get("version_id")): o["url"]
                                                   for o in (found or {}).get("objects", [])}
        return self._artifacts[(experiment_id, n)]

    def registry_version(self, name: str, version: str) -> dict[str, Any] | None:
        quoted = "/".join(urllib.parse.quote(p, safe="") for p in (name, "versions", version))
        return self._api(f"/registry/{quoted}", missing_ok=True)
