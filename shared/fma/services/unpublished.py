"""What one aggregation attempt wrote before its publish, and removing it when the publish loses.

Round n's model, server state and manifest are written before the publish transaction, so that
a crash re-runs to the same objects. When that transaction refuses the publish (a STOP committed
first, or another attempt holds or won the lease), the objects this attempt wrote belong to no
published model. The loser removes exactly the versions it wrote, so the bucket never holds a
model for a round that was never published:

- the round was PUBLISHED by another attempt: nothing is removed (every object is a byte-identical
  version of what was published: aggregation is deterministic);
- the round can still publish (another attempt holds its lease): this attempt's model and state
  versions go (the other writes its own); its manifest stays, as the other may already have
  adopted it (a manifest is written once, history.write_manifest);
- the round can no longer publish (FAILED, or its experiment ended): the manifest goes too.

Removal is best effort: a version that cannot be deleted (an Object Lock retention, a fault) is
reported in the result as left behind, never raised, so the outcome of the round stands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fma.domain.states import ENDED, RoundState
from fma.services.deps import Deps

log = logging.getLogger(__name__)


@dataclass
class Written:
    """The exact object versions one attempt wrote for its round (None: an unversioned store)."""

    outputs: list[tuple[str, str | None]] = field(default_factory=list)  # model and server state
    manifest: tuple[str, str | None] | None = None  # only when this attempt's write created it

    def output(self, key: str, version_id: str | None) -> None:
        self.outputs.append((key, version_id))


def discard(deps: Deps, experiment_id: str, n: int, written: Written) -> dict[str, Any]:
    """After a refused publish: remove what `written` names (see the module's rules).

    Returns `{"removed": [keys], "left": [keys]}` for the aggregation's result and logs."""
    rnd = deps.repo.get_round(experiment_id, n)
    if rnd is not None and rnd.state == RoundState.PUBLISHED:
        return {"removed": [], "left": []}
    exp = deps.repo.get_experiment(experiment_id)
    dead = rnd is None or rnd.state == RoundState.FAILED or exp is None or exp.status in ENDED
    doomed = [(k, v) for k, v in written.outputs if v is not None or dead]  # unversioned: the key may be another's
    if dead and written.manifest is not None:
        doomed.append(written.manifest)
    removed, left = [], []
    for key, version_id in doomed:
        try:
            deps.store.delete_version(key, version_id)
            removed.append(key)
        except Exception as exc:  # any store's fault: the round's outcome must stand
            log.warning("could not remove %s (version %s) of an unpublished round: %s", key, version_id, exc)
            left.append(key)
    return {"removed": removed, "left": left}
