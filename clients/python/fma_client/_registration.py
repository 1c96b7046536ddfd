"""A client's registration (client id + token) kept on disk, so a restarted client resumes.

Why: a client token lives only in the registration's answer. Without a copy, a client that
restarts (a crash, a reboot, a rerun of the script) must register again, which burns one
use of the enrollment token and leaves a ghost client in the experiment.

Where: the file the user names (`registration_file=`), or by default
`$XDG_CONFIG_HOME/fma/clients/` (`~/.config/fma/clients/`, `%APPDATA%\\fma\\clients` on
Windows) under a name derived from the base URL, the experiment id and the client's `name`.
Files are written atomically with mode 0600 in a 0700 folder: the token is a credential.

Several clients of one experiment on one machine (threads or processes started from the same
script) must not share an identity, so a running client holds an exclusive lock on its slot
(`flock`, released when the client closes or its process ends) and the next client takes the
next free slot. Clients with distinct `name`s have distinct files and so stable identities.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fma_client.errors import FmaError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, one client per registration file
    fcntl = None  # type: ignore[assignment]

MAX_SLOTS = 256
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Registration:
    client_id: str
    token: str


def default_dir() -> Path:
    """The user's config folder for FMA client registrations."""
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "fma" / "clients"
    root = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(root) / "fma" / "clients"


def write_private_json(path: Path, body: Any) -> None:
    """Replace `path` with `body` as JSON atomically (a temp file per process and thread, fsynced,
    then renamed), readable by the user only: a token or an upload's progress never half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(body, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)  # a temp file left by a crash keeps its mode through O_TRUNC
    os.replace(tmp, path)


class RegistrationStore:
    """One claimed registration slot: read what a previous run saved, save a new one."""

    def __init__(self, base_url: str, experiment_id: str, name: str | None, path: str | os.PathLike | None) -> None:
        self.base_url, self.experiment_id, self.name = base_url, experiment_id, name
        self.explicit = Path(path) if path is not None else None
        self.path: Path | None = None
        self._lock: IO[bytes] | None = None

    def claim(self) -> Registration | None:
        """Lock a slot (the named file, or the first free default slot); return what it holds."""
        if self.explicit is not None:
            if not self._try_lock(self.explicit):
                raise FmaError(f"registration file {self.explicit} is in use by another running client; "
                               "give each client its own registration_file (or name)")  # fmt: skip
            self.path = self.explicit
        else:
            stem = default_dir() / self._stem()
            for slot in range(MAX_SLOTS):
                candidate = stem.with_name(f"{stem.name}-{slot}.json" if slot else f"{stem.name}.json")
                if self._try_lock(candidate):
                    self.path = candidate
                    break
            else:
                raise FmaError(f"all {MAX_SLOTS} registration slots under {stem.parent} are in use")
        return self._read()

    def save(self, registration: Registration) -> None:
        """Write the registration atomically (temp file + rename), readable by the user only."""
        if self.path is None:
            return
        body = {"version": FORMAT_VERSION, "base_url": self.base_url, "experiment_id": self.experiment_id,
                "name": self.name, "client_id": registration.client_id, "token": registration.token,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        write_private_json(self.path, body)

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None

    def _stem(self) -> str:
        key = "\n".join([self.base_url, self.experiment_id, self.name or ""])
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.experiment_id)[:40] or "experiment"
        return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def _try_lock(self, path: Path) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = path.with_name(path.name + ".lock")
        handle = open(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600), "rb+")  # noqa: SIM115 - held open
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
        self._lock = handle
        return True

    def _read(self) -> Registration | None:
        assert self.path is not None
        try:
            body: Any = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a torn or foreign file: register anew and overwrite it
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("client_id"), str)
            or not isinstance(body.get("token"), str)
        ):
            return None
        if body.get("base_url") != self.base_url or body.get("experiment_id") != self.experiment_id:
            raise FmaError(
                f"registration file {self.path} belongs to experiment {body.get('experiment_id')!r} at "
                f"{body.get('base_url')}, not {self.experiment_id!r} at {self.base_url}; use another file"
            )
        return Registration(body["client_id"], body["token"])
