"""The registry and lineage ports over a transactional row store (the embedded connectors).

Same rows and semantics as the aws connector's items (fma.adapters.repo_registry): a name row
(owner, count, latest and production pointers), one row per version keyed by its semantic-version
sort key, and `links` rows in the experiment's own key range (`LINK#PARENT`,
`LINK#CHILD#{created}#{child}`, `LINK#REG#{name}#{version}`). Every change is one `write()`
transaction that checks its conditions on what it read: a version string is created once (two
racing creators of the same number: one wins, the other gets False and nothing written), and a
production hand-over moves both versions and the name's pointer together or not at all.
"""

from __future__ import annotations

import dataclasses

from fma.adapters.memory import rows as R
from fma.adapters.memory.kv import RowStore, Tx
from fma.adapters.memory.records import _deadline_due
from fma.domain.experiment import Experiment
from fma.domain.records import Page, RoundRecord
from fma.domain.registry import Lineage, RegistryName, RegistryVersion, RoundRef, Stage, parse_version
from fma.domain.states import ExperimentStatus, allowed

PARENT_SK = "LINK#PARENT"
MAX_LINKS = 200  # what an experiment's detail shows (the aws connector's one query reads as many)
VERSION_FIELDS = tuple(f.name for f in dataclasses.fields(RegistryVersion))


def _version_row(v: RegistryVersion) -> R.Row:
    return dataclasses.asdict(v) | {"stage": str(v.stage), "sort_key": v.sort_key}


def _to_version(row: R.Row) -> RegistryVersion:
    data = {k: row[k] for k in VERSION_FIELDS}
    return RegistryVersion(**(data | {"stage": Stage(row["stage"]), "round": int(row["round"]),
                                      "size": int(row["size"])}))


def _to_name(row: R.Row) -> RegistryName:
    return RegistryName(row["name"], row["owner"], int(row["versions"]), row.get("latest_version"),
                        row.get("production_version"), row["created_at"], row["updated_at"])


def _version_key(name: str, version: str) -> R.Key:
    return (name, parse_version(version).sort_key)


def _reg_link_key(v: RegistryVersion) -> R.Key:
    return (v.experiment_id, f"LINK#REG#{v.name}#{v.version}")


def _set_stage(tx: Tx, v: RegistryVersion, stage: Stage, expected: Stage) -> bool:
    """Move version `v` (and its experiment link) to `stage` if its row still has `expected`."""
    row = tx.get("registry_versions", _version_key(v.name, v.version))
    if row is None or row["version"] != v.version or row["stage"] != str(expected):
        return False
    tx.put("registry_versions", row | {"stage": str(stage)})
    link = tx.get("links", _reg_link_key(v))
    if link is not None:
        tx.put("links", link | {"stage": str(stage)})
    return True


class _Abort(Exception):
    """A condition failed after something was staged: the transaction rolls back."""


class RegistryRecords:
    rows: RowStore

    def get_registry_name(self, name: str) -> RegistryName | None:
        with self.rows.read() as tx:
            row = tx.get("registry_names", (name,))
        return _to_name(row) if row else None

    def list_registry_names(self, limit: int, cursor: str | None) -> Page:
        """Names in order; the cursor is the last name of the previous page."""
        after = R.decode_cursor(cursor, str, "registry-names")
        with self.rows.read() as tx:
            found = tx.scan("registry_names", (), None if after is None else (after,), limit + 1)
        page = [_to_name(r) for r in found[:limit]]
        return Page(page, R.encode_cursor(page[-1].name, "registry-names") if len(found) > limit else None)

    def list_registry_versions(self, name: str, limit: int, cursor: str | None) -> Page:
        """Highest version first; the cursor is the last sort key of the previous page."""
        after = R.decode_cursor(cursor, str, f"registry-versions#{name}")
        with self.rows.read() as tx:
            found = tx.scan("registry_versions", (name,), None if after is None else (name, after), limit + 1,
                            descending=True)
        page = found[:limit]
        more = len(found) > limit
        return Page([_to_version(r) for r in page], R.encode_cursor(page[-1]["sort_key"], f"registry-versions#{name}")
                    if more else None)

    def get_registry_version(self, name: str, version: str) -> RegistryVersion | None:
        with self.rows.read() as tx:
            row = tx.get("registry_versions", _version_key(name, version))
        return _to_version(row) if row and row["version"] == version else None

    def highest_registry_version(self, name: str) -> RegistryVersion | None:
        with self.rows.read() as tx:
            found = tx.scan("registry_versions", (name,), limit=1, descending=True)
        return _to_version(found[0]) if found else None

    def create_registry_version(self, v: RegistryVersion, *, owner: str, enforce_owner: bool,
                                demote: RegistryVersion | None) -> bool:
        """Add `v` (its name created on first use, owned by `owner`); `demote` is the production
        version `v` replaces. False when any condition failed: nothing was written."""
        try:
            with self.rows.write() as tx:
                if tx.get("registry_versions", (v.name, v.sort_key)) is not None:
                    return False
                name = tx.get("registry_names", (v.name,))
                if name is not None and enforce_owner and name["owner"] != owner:
                    return False
                if v.stage == Stage.PRODUCTION and (name or {}).get("production_version") != (
                        demote.version if demote else None):
                    return False
                tx.put("registry_versions", _version_row(v))
                tx.put("registry_names", _named(name, v, owner))
                tx.put("links", {"experiment_id": v.experiment_id, "sk": _reg_link_key(v)[1], "kind": "registry",
                                 "round": v.round, "name": v.name, "version": v.version, "stage": str(v.stage),
                                 "created_at": v.created_at})
                if demote is not None and not _set_stage(tx, demote, Stage.NONE, Stage.PRODUCTION):
                    raise _Abort
        except _Abort:
            return False
        return True

    def set_registry_stage(self, v: RegistryVersion, stage: Stage, demote: RegistryVersion | None,
                           now: str) -> bool:
        """Move `v` to `stage`, handing production over from `demote`, in one transaction."""
        try:
            with self.rows.write() as tx:
                name = tx.get("registry_names", (v.name,))
                if name is None:
                    return False
                production = name.get("production_version")
                if stage == Stage.PRODUCTION:
                    if production != (demote.version if demote else None):
                        return False
                    name = name | {"production_version": v.version, "updated_at": now}
                elif v.stage == Stage.PRODUCTION:
                    if production != v.version:
                        return False
                    name = name | {"production_version": None, "updated_at": now}
                if not _set_stage(tx, v, stage, v.stage):
                    return False
                tx.put("registry_names", name)
                if demote is not None and not _set_stage(tx, demote, Stage.NONE, Stage.PRODUCTION):
                    raise _Abort
        except _Abort:
            return False
        return True


def _named(name: R.Row | None, v: RegistryVersion, owner: str) -> R.Row:
    """The name row after adding `v`: created on first use, counted, pointers moved."""
    row = name or {"name": v.name, "owner": owner, "versions": 0, "created_at": v.created_at,
                   "production_version": None}
    row = row | {"versions": int(row["versions"]) + 1, "latest_version": v.version, "updated_at": v.created_at}
    if v.stage == Stage.PRODUCTION:
        row["production_version"] = v.version
    return row


class LineageRecords:
    rows: RowStore

    def create_fork(self, exp: Experiment, spec: list[dict], sha256: str, first_round: RoundRecord,
                    parent: RoundRef, parent_manifest_sha256: str | None) -> bool:
        """A RUNNING experiment with version 0 and round 1 OPEN, its parent link and the parent's
        child link, in one transaction that also checks the parent's round is still there."""
        with self.rows.write() as tx:
            if (tx.get("experiments", (exp.id,)) is not None
                    or tx.get("rounds", (exp.id, first_round.round)) is not None
                    or not _forkable(tx, parent)):
                return False
            row = R.experiment_row(exp) | {
                "status": str(ExperimentStatus.RUNNING), "model_spec": spec, "model_sha256": sha256,
                "model_version": 0, "initial_sha256": sha256, "current_round": 1}
            tx.put("experiments", row)
            tx.put("rounds", R.round_row(first_round, _deadline_due(first_round)))
            tx.put("links", {"experiment_id": exp.id, "sk": PARENT_SK, "kind": "parent",
                             "other_id": parent.experiment_id, "round": parent.round,
                             "manifest_sha256": parent_manifest_sha256, "created_at": exp.created_at})
            tx.put("links", {"experiment_id": parent.experiment_id, "sk": f"LINK#CHILD#{exp.created_at}#{exp.id}",
                             "kind": "child", "other_id": exp.id, "round": parent.round,
                             "created_at": exp.created_at})
        return True

    def get_lineage(self, experiment_id: str) -> Lineage:
        """Parent, children (oldest first) and registry versions of one experiment's link rows
        (the parent read by its key, so however many children there are it is never cut off)."""
        parent, children, registry, manifest = None, [], [], None
        with self.rows.read() as tx:
            link = tx.get("links", (experiment_id, PARENT_SK))
            links = [r for r in tx.scan("links", (experiment_id,), limit=MAX_LINKS + 1) if r["kind"] != "parent"]
        if link is not None:
            parent, manifest = RoundRef(link["other_id"], int(link["round"])), link.get("manifest_sha256")
        for link in links[:MAX_LINKS]:
            if link["kind"] == "child":
                children.append(RoundRef(link["other_id"], int(link["round"])))
            elif link["kind"] == "registry":
                registry.append({"name": link["name"], "version": link["version"], "round": int(link["round"]),
                                 "stage": link["stage"]})
        return Lineage(parent, children, registry, manifest)


def _forkable(tx: Tx, parent: RoundRef) -> bool:
    """The parent's round 0 is its initial model once it has one; any other round once published."""
    if parent.round == 0:
        row = tx.get("experiments", (parent.experiment_id,))
        return row is not None and bool(row.get("initial_sha256"))
    row = tx.get("rounds", (parent.experiment_id, parent.round))
    return row is not None and row["state"] in allowed("create_fork.parent_round")
