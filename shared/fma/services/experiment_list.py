"""The experiments list as the dashboard compares experiments: filters (`status`, `strategy`,
`q`) checked like any other input, and per experiment what needs attention (a stuck round)
and the latest metrics (the clients' training metrics of the latest published round, the
federated evaluation of the latest evaluated model).

Filters apply to the pages the repository reads (newest first), so a filtered page may hold
fewer than `limit` experiments while `next_cursor` says more may follow; the reads a request
makes stay bounded (`MAX_FETCHES` pages).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fma.domain.errors import InvalidInput
from fma.domain.experiment import Experiment
from fma.domain.records import Page
from fma.domain.states import ExperimentStatus
from fma.services.bodies import listing
from fma.services.deps import Deps
from fma.services.rounds_view import health, weighted

MAX_QUERY = 200
MAX_FETCHES = 10
WATCHED = (ExperimentStatus.RUNNING, ExperimentStatus.PAUSED)


@dataclass(frozen=True)
class ListFilters:
    statuses: frozenset[str] = frozenset()
    strategy: str | None = None
    query: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.statuses or self.strategy or self.query)

    def matches(self, exp: Experiment) -> bool:
        return ((not self.statuses or str(exp.status) in self.statuses)
                and (self.strategy is None or exp.strategy_name == self.strategy)
                and (self.query is None or self.query in exp.name.casefold()))


def parse_filters(params: Mapping[str, str | None]) -> ListFilters:
    """`status` (one or more, comma-separated), `strategy` (a known name), `q` (part of the
    name, any case); a bad value is a 400 naming the parameter."""
    statuses = frozenset()
    if params.get("status"):
        wanted = [s.strip() for s in params["status"].split(",")]
        allowed = [str(s) for s in ExperimentStatus]
        bad = [s for s in wanted if s not in allowed]
        if bad:
            raise InvalidInput(f"status must be one or more of: {listing(allowed)} (comma-separated)",
                               code="INVALID_QUERY_PARAMETER", details={"parameter": "status", "allowed": allowed})
        statuses = frozenset(wanted)
    strategy = params.get("strategy") or None
    if strategy is not None and not _known_strategy(strategy):
        raise InvalidInput("strategy is not a known strategy name", code="INVALID_QUERY_PARAMETER",
                           details={"parameter": "strategy"})
    query = params.get("q")
    if query is not None and (len(query) > MAX_QUERY or not query.isprintable()):
        raise InvalidInput(f"q must be printable text of at most {MAX_QUERY} characters",
                           code="INVALID_QUERY_PARAMETER", details={"parameter": "q"})
    return ListFilters(statuses, strategy, (query.strip().casefold() or None) if query else None)


def _known_strategy(name: str) -> bool:
    from fma.domain.strategy_catalog import CATALOG, load_plugins

    if len(name) > 64:
        return False
    if name not in CATALOG:
        load_plugins()
    return name in CATALOG


def filtered_page(fetch: Callable[[int, str | None], Page], filters: ListFilters, limit: int,
                  cursor: str | None) -> Page:
    """Up to `limit` matching experiments; each read asks for exactly the number still missing,
    so the cursor it returns never skips an experiment."""
    if not filters.active:
        return fetch(limit, cursor)
    found: list[Experiment] = []
    for _ in range(MAX_FETCHES):
        page = fetch(limit - len(found), cursor)
        found += [e for e in page.items if filters.matches(e)]
        cursor = page.next_cursor
        if len(found) >= limit or cursor is None:
            break
    return Page(found, cursor)


def summary(deps: Deps, exp: Experiment) -> dict[str, Any]:
    """`current_round_state`, `attention` (null unless a round needs someone) and `latest_metrics`."""
    current = deps.repo.get_round(exp.id, exp.current_round) if exp.current_round else None
    return {"current_round_state": str(current.state) if current else None,
            "attention": _attention(deps, exp, current), "latest_metrics": _latest(deps, exp, current)}


def _attention(deps: Deps, exp: Experiment, current: Any) -> dict[str, Any] | None:
    if current is None or exp.status not in WATCHED:
        return None
    state = health(current, deps.clock(), deps.limits.lease_seconds)
    if not state["stuck"]:
        return None
    return {"code": "ROUND_STUCK", "round": current.round, "state": str(current.state),
            "age_seconds": state["age_seconds"], "attempts": current.attempts, "last_error": current.last_error,
            "message": f"round {current.round} has been {current.state} for {int(state['age_seconds'])} s "
                       f"({current.attempts} aggregation attempt(s))"}


def _latest(deps: Deps, exp: Experiment, current: Any) -> dict[str, Any] | None:
    version = exp.model_version
    if version is None:
        return None
    training: dict[str, float] = {}
    if version >= 1:
        published = current if current is not None and current.round == version else deps.repo.get_round(exp.id,
                                                                                                           version)
        training = dict((published.metrics or {}) if published else {})
    evaluated = None
    for n in (version, version - 1) if version >= 1 else (version,):
        evals = deps.repo.list_evaluations(exp.id, n)
        if evals:
            evaluated = (n, weighted(evals))
            break
    return {"round": version, "training": training, "evaluation_round": evaluated[0] if evaluated else None,
            "evaluation": evaluated[1] if evaluated else {}}
