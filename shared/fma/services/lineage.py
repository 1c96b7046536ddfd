"""Lineage: an experiment may start `from` a published round of another one (a fork).

The fork starts RUNNING at once: the parent round's model is copied server-side to the fork's
`models/{id}/00000000.safetensors` (its version 0), its model spec is the parent's, and the
experiment, its round 1, its parent link and the parent's child link are written in one
transaction. The copy's object-created event finds the experiment RUNNING and changes nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fma.domain.auth import Principal
from fma.domain.errors import Conflict, FmaError, InvalidInput, NotFound
from fma.domain.experiment import Experiment, new_round
from fma.domain.registry import RoundRef
from fma.domain.states import ExperimentStatus, RoundState
from fma.services.bodies import require_object
from fma.services.deps import Deps, manifest_key, model_key, model_version_id


def links(deps: Deps, experiment_id: str) -> dict[str, Any]:
    """`parent` (null for a root), `children` and `registry` versions of an experiment's detail."""
    lineage = deps.repo.get_lineage(experiment_id)
    return {"parent": lineage.parent.to_public() if lineage.parent else None,
            "children": [c.to_public() for c in lineage.children], "registry": lineage.registry}


def parse_from(value: object) -> RoundRef:
    data = require_object(value, ("experiment_id", "round"), ("experiment_id", "round"))
    exp_id, n = data["experiment_id"], data["round"]
    if not isinstance(exp_id, str) or not exp_id:
        raise InvalidInput("from.experiment_id must be a string", code="INVALID_FROM",
                           details={"field": "from.experiment_id"})
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 99_999_999:
        raise InvalidInput("from.round must be a round number (0 = the initial model)", code="INVALID_FROM",
                           details={"field": "from.round"})
    return RoundRef(exp_id, n)


def create_fork(deps: Deps, caller: Principal, exp: Experiment, source: object,
                load_experiment: Any) -> dict[str, Any]:
    """POST /v1/experiments with `from`: 201 `{"experiment", "upload": null}`, RUNNING."""
    ref = parse_from(source)
    try:
        parent = load_experiment(deps, caller, ref.experiment_id)
    except FmaError:  # not readable by this caller: the same answer as not there
        raise NotFound(f"experiment {ref.experiment_id} not found", code="PARENT_NOT_FOUND",
                       details={"field": "from.experiment_id"}) from None
    sha, manifest_sha = _source(deps, parent, ref.round)
    exp.initial_version_id = deps.store.copy(model_key(parent.id, ref.round), model_key(exp.id, 0),
                                             model_version_id(parent, ref.round))
    exp.status, exp.model_spec, exp.model_version, exp.current_round = (
        ExperimentStatus.RUNNING, parent.model_spec, 0, 1)
    exp.model_sha256 = exp.initial_sha256 = sha
    if not deps.repo.create_fork(exp, parent.model_spec, sha, new_round(exp, 1, deps.clock()), ref, manifest_sha):
        raise Conflict("the parent round changed while forking; retry", code="FORK_CONFLICT")
    return {"experiment": exp.to_public() | links(deps, exp.id), "upload": None}


def _source(deps: Deps, parent: Experiment, n: int) -> tuple[str, str | None]:
    """(model sha256, manifest sha256) of the parent's round n; 409 unless it is published."""
    if not parent.model_spec:
        raise Conflict(f"experiment {parent.id} has no model yet", code="ROUND_NOT_PUBLISHED",
                       details={"field": "from.round"})
    if n == 0:
        return str(parent.initial_sha256), None
    rnd = deps.repo.get_round(parent.id, n)
    if rnd is None or rnd.state != RoundState.PUBLISHED or not rnd.model_sha256:
        raise Conflict(f"round {n} of {parent.id} is not published", code="ROUND_NOT_PUBLISHED",
                       details={"field": "from.round"})
    try:
        manifest = hashlib.sha256(deps.store.get(manifest_key(parent.id, n))).hexdigest()
    except Exception:  # the parent's history is broken there: fork from a round that is whole
        raise Conflict(f"the manifest of round {n} of {parent.id} cannot be read", code="MANIFEST_MISSING",
                       details={"field": "from.round"}) from None
    return rnd.model_sha256, manifest
