"""Waiting on the experiment's pointer object instead of the API.

The server gives each client a `poll_url` (in GET .../model): a small JSON object the server
rewrites whenever something a waiting client acts on changes, served from a cache (CloudFront
on AWS, the gateway locally). Polling it costs no API request, Lambda or DynamoDB read, and a
conditional GET answers 304 while nothing changed. A waiting client polls it (jittered around
the poll interval) and asks the API only when it changed, after a random pause of up to the
pointer's `spread_seconds`, so that 100,000 clients do not reach the API in the same second.
It also asks the API at least every API_FALLBACK_SECONDS, so a pointer write the server lost
delays a client, never strands it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fma_client._http import Transport
from fma_client.errors import FmaError

log = logging.getLogger("fma_client")

#: ask the API at least this often while the pointer says nothing changed
API_FALLBACK_SECONDS = 300.0
MAX_SPREAD_SECONDS = 120.0


class PointerWatch:
    """Conditional GETs of one pointer URL (no bearer token: the URL is the capability)."""

    def __init__(self, http: Transport, url: str) -> None:
        self.http, self.url = http, url
        self.etag: str | None = None
        self.body: dict[str, Any] | None = None
        self.requests = 0

    def poll(self) -> dict[str, Any] | None:
        """The pointer now (None until it exists or while it cannot be read)."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        self.requests += 1
        try:
            response = self.http.send("GET", self.url, ok=(200, 304), headers=headers)
            if response.status_code == 200:
                body = response.json()
                if isinstance(body, dict):
                    self.etag, self.body = response.headers.get("ETag"), body
        except (FmaError, ValueError) as exc:  # not written yet (404), a cache error: wait on
            log.debug("pointer %s not readable: %s", self.url, exc)
        return self.body


def wait_for_change(client: Any, watch: PointerWatch, moved: Callable[[dict[str, Any]], bool],
                    delay: float, limit: float | None = None) -> None:
    """Return once the pointer shows `moved` (after its spread pause), or after
    API_FALLBACK_SECONDS (or `limit`): the caller asks the API next either way."""
    deadline = client.clock() + min(API_FALLBACK_SECONDS, limit if limit is not None else API_FALLBACK_SECONDS)
    while client.clock() < deadline:
        client.waiter.pause(delay, max(deadline - client.clock(), 0.0), obey_hint=False)
        body = watch.poll()
        if body is not None and moved(body):
            spread = min(max(float(body.get("spread_seconds") or 0.0), 0.0), MAX_SPREAD_SECONDS)
            if spread:
                client.waiter.sleep(client.waiter.rng.uniform(0.0, spread))
            return
