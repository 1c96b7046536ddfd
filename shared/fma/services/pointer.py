"""The per-experiment pointer object: what a waiting client polls instead of the API.

100,000 clients polling `GET .../model` every 10 s cost 10,000 API requests, Lambda invocations
and DynamoDB reads per second on one item (docs/scale.md, "Cheap polling"). The pointer is a
small JSON object, `pointers/{experiment_id}/{poll_id}.json`, rewritten whenever something a
waiting client acts on changes (activation, a publish, a failed round, pause/resume/stop, the
end), and served from a cache: on AWS the dashboard's CloudFront distribution (`/pointers/*`,
5 s TTL, ETag answered 304 at the edge), in local mode the gateway. `poll_id` is a random
128-bit value kept on the experiment and given to its clients only, so the URL is a capability
that reveals nothing a registered client cannot already read.

Writes happen after the metadata change committed (PointerPublishing wraps the metadata store),
from whichever function made it; two racing writers converge because each re-reads the
experiment after its write and writes again while what it wrote is not what is stored.
A write that fails is logged and does not undo the change: the SDK also asks the API at least
every `API_FALLBACK_SECONDS` (fma_client), so a lost pointer write delays clients, never strands
them.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from fma.domain.experiment import Experiment
from fma.services.ports import MetadataStore, ModelStore

log = logging.getLogger(__name__)

#: the metadata store's methods after which the pointer is rewritten (a poller acts on them).
CHANGES = frozenset({"activate", "set_status", "stop_experiment", "finish_experiment", "publish_round",
                     "publish_version", "fail_round", "create_fork"})
#: the API's request budget for model downloads right after a publish (requests/s): a client
#: waits uniform(0, expected clients / this) seconds before fetching, so a publish does not
#: bring every client to the API in the same second.
DOWNLOAD_REQUESTS_PER_SECOND = 2000
MAX_REWRITES = 4


def new_poll_id() -> str:
    return secrets.token_hex(16)


def pointer_key(experiment_id: str, poll_id: str) -> str:
    return f"pointers/{experiment_id}/{poll_id}.json"


def poll_url(base_url: str | None, exp: Experiment) -> str | None:
    """Where the experiment's clients poll; None without a pointer host or a poll id."""
    if not base_url or not exp.poll_id:
        return None
    return _pointer_url(base_url, exp.id, exp.poll_id)


def _pointer_url(base_url: str, experiment_id: str, poll_id: str) -> str:
    return f"{base_url.rstrip('/')}/{pointer_key(experiment_id, poll_id)}"


#: experiment id -> poll id, per process (a Lambda environment): a poll id never changes once
#: the experiment exists, so a registration need not read the experiment item again for it.
_KNOWN_POLL_IDS: dict[str, str] = {}
MAX_KNOWN_POLL_IDS = 4096


def registration_poll_url(base_url: str | None, experiment_id: str,
                          read: Callable[[str], Experiment | None]) -> str | None:
    """`poll_url` for a client just registered. The experiment item is the hottest item of a
    100,000-client round (every request reads it consistently); the registration has already
    read it once (is the experiment open to clients?), so the poll id, immutable, is read once
    per process and remembered, not once per registration."""
    if not base_url:
        return None
    poll_id = _KNOWN_POLL_IDS.get(experiment_id)
    if poll_id is None:
        exp = read(experiment_id)
        if exp is None or not exp.poll_id:
            return None
        if len(_KNOWN_POLL_IDS) >= MAX_KNOWN_POLL_IDS:
            _KNOWN_POLL_IDS.clear()
        poll_id = _KNOWN_POLL_IDS[experiment_id] = exp.poll_id
    return _pointer_url(base_url, experiment_id, poll_id)


def pointer_body(exp: Experiment) -> dict[str, Any]:
    return {
        "experiment_id": exp.id, "status": str(exp.status), "mode": exp.policy.mode,
        "current_round": exp.current_round, "model_version": exp.model_version,
        "model_sha256": exp.model_sha256, "updated_at": exp.updated_at,
        "spread_seconds": round(max(exp.expected_clients, 1) / DOWNLOAD_REQUESTS_PER_SECOND, 3),
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def refresh_pointer(repo: MetadataStore, store: ModelStore, experiment_id: str) -> bool:
    """Write the pointer from the stored experiment until a re-read shows what was written;
    True if the pointer is current (False: no pointer for this experiment, or the writes failed)."""
    written: dict[str, Any] | None = None
    for _ in range(MAX_REWRITES):
        exp = repo.get_experiment(experiment_id)
        if exp is None or not exp.poll_id:
            return False
        body = pointer_body(exp)
        if body == written:
            return True
        try:
            store.put(pointer_key(exp.id, exp.poll_id), encode(body), "application/json")
        except Exception:  # the change committed; clients fall back to the API (module doc)
            log.warning("pointer of %s not written", experiment_id, exc_info=True)
            return False
        written = body
    return False


class PointerPublishing:
    """A metadata store that rewrites the pointer after each committed change in CHANGES; every
    other attribute is the wrapped store's."""

    def __init__(self, repo: MetadataStore, store: ModelStore) -> None:
        self._repo, self._store = repo, store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._repo, name)
        if name not in CHANGES:
            return attr

        def changed(first: Any, *args: Any, **kwargs: Any) -> Any:
            result = attr(first, *args, **kwargs)
            if result is not False:  # False: nothing changed (a lost race, already done)
                    refresh_pointer(self._repo, self._store, first.id if isinstance(first, Experiment) else first)
            return result

        return changed
