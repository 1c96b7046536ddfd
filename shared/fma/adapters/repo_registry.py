"""Registry and lineage items in the single table (DESIGN section 4; docs/design-notes.md).

Keys: `REGISTRY`/`NAME#{name}` (one per model name), `REG#{name}`/`VER#{semver sort key}` (one
partition per name: versions list newest first by a query), and `LINK#...` items in an
experiment's own partition (its parent, its children, its registry versions: the detail reads
them with one query). Every change is one transaction, so a version, its name's counters, its
experiment's link and a production hand-over appear together or not at all.
"""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from fma.adapters.dynamo_common import decode_cursor, encode_cursor, state_in, transact
from fma.adapters.dynamo_models import (
    ExperimentItem,
    LinkItem,
    RegistryNameItem,
    RegistryVersionItem,
    RoundItem,
    exp_pk,
    round_sk,
)
from fma.adapters.repo_experiments import experiment_item
from fma.adapters.repo_rounds import round_item
from fma.domain.experiment import Experiment
from fma.domain.records import Page, RoundRecord
from fma.domain.registry import Lineage, RegistryName, RegistryVersion, RoundRef, Stage, parse_version
from fma.domain.states import ExperimentStatus

REGISTRY_PK = "REGISTRY"
PARENT_SK = "LINK#PARENT"
MAX_LINKS = 200


def reg_pk(name: str) -> str:
    return f"REG#{name}"


def version_sk(version: str) -> str:
    return f"VER#{parse_version(version).sort_key}"


def _link_reg_sk(name: str, version: str) -> str:
    return f"LINK#REG#{name}#{version}"


def _to_version(item: RegistryVersionItem) -> RegistryVersion:
    return RegistryVersion(
        name=item.name, version=item.version, experiment_id=item.experiment_id, round=int(item.round),
        sha256=item.sha256, size=int(item.size), stage=Stage(item.stage), notes=item.notes,
        created_by=item.created_by, created_at=item.created_at, manifest_key=item.manifest_key,
        manifest_sha256=item.manifest_sha256)


def _to_name(item: RegistryNameItem) -> RegistryName:
    return RegistryName(item.name, item.owner, int(item.versions or 0), item.latest_version,
                        item.production_version, item.created_at, item.updated_at)


def _cursor(cursor: str | None, pk: str, sk_prefix: str) -> dict | None:
    """A cursor of this very list (a cursor of another list is a 400, not a DynamoDB error)."""
    return decode_cursor(cursor, {"pk": pk, "sk": f"{sk_prefix}*"})


class RegistryRepository:
    def get_registry_name(self, name: str) -> RegistryName | None:
        try:
            return _to_name(RegistryNameItem.get(REGISTRY_PK, f"NAME#{name}", consistent_read=True))
        except DoesNotExist:
            return None

    def list_registry_names(self, limit: int, cursor: str | None) -> Page:
        result = RegistryNameItem.query(REGISTRY_PK, RegistryNameItem.sk.startswith("NAME#"), limit=limit,
                                        last_evaluated_key=_cursor(cursor, REGISTRY_PK, "NAME#"))
        return Page([_to_name(i) for i in result], encode_cursor(result.last_evaluated_key))

    def list_registry_versions(self, name: str, limit: int, cursor: str | None) -> Page:
        """Highest version first."""
        result = RegistryVersionItem.query(reg_pk(name), RegistryVersionItem.sk.startswith("VER#"),
                                           scan_index_forward=False, limit=limit,
                                           last_evaluated_key=_cursor(cursor, reg_pk(name), "VER#"))
        return Page([_to_version(i) for i in result], encode_cursor(result.last_evaluated_key))

    def get_registry_version(self, name: str, version: str) -> RegistryVersion | None:
        try:
            item = RegistryVersionItem.get(reg_pk(name), version_sk(version), consistent_read=True)
        except DoesNotExist:
            return None
        return _to_version(item) if item.version == version else None

    def highest_registry_version(self, name: str) -> RegistryVersion | None:
        for item in RegistryVersionItem.query(reg_pk(name), RegistryVersionItem.sk.startswith("VER#"),
                                              scan_index_forward=False, limit=1, consistent_read=True):
            return _to_version(item)
        return None

    def create_registry_version(self, v: RegistryVersion, *, owner: str, enforce_owner: bool,
                                demote: RegistryVersion | None) -> bool:
        """Add `v` (its name created on first use, owned by `owner`); `demote` is the production
        version `v` replaces. False when any condition failed: nothing was written."""
        def build(t):
            t.save(_version_item(v), condition=RegistryVersionItem.pk.does_not_exist())
            t.update(RegistryNameItem(REGISTRY_PK, f"NAME#{v.name}"), actions=_name_actions(v, owner),
                     condition=_name_condition(owner, enforce_owner, demote, v.stage))
            t.save(LinkItem(exp_pk(v.experiment_id), _link_reg_sk(v.name, v.version), kind="registry",
                            round=v.round, name=v.name, version=v.version, stage=str(v.stage),
                            created_at=v.created_at))
            if demote is not None:
                _demote(t, demote)
        return not transact(build)

    def set_registry_stage(self, v: RegistryVersion, stage: Stage, demote: RegistryVersion | None,
                           now: str) -> bool:
        """Move `v` to `stage`, handing production over from `demote`, in one transaction."""
        def build(t):
            t.update(RegistryVersionItem(reg_pk(v.name), version_sk(v.version)),
                     actions=[RegistryVersionItem.stage.set(str(stage))],
                     condition=RegistryVersionItem.stage == str(v.stage))
            t.update(LinkItem(exp_pk(v.experiment_id), _link_reg_sk(v.name, v.version)),
                     actions=[LinkItem.stage.set(str(stage))])
            name = RegistryNameItem(REGISTRY_PK, f"NAME#{v.name}")
            if stage == Stage.PRODUCTION:
                t.update(name, actions=[RegistryNameItem.production_version.set(v.version),
                                        RegistryNameItem.updated_at.set(now)],
                         condition=_production_is(demote.version if demote else None))
            elif v.stage == Stage.PRODUCTION:
                t.update(name, actions=[RegistryNameItem.production_version.remove(),
                                        RegistryNameItem.updated_at.set(now)],
                         condition=_production_is(v.version))
            if demote is not None:
                _demote(t, demote)
        return not transact(build)


def _version_item(v: RegistryVersion) -> RegistryVersionItem:
    return RegistryVersionItem(
        reg_pk(v.name), version_sk(v.version), name=v.name, version=v.version, experiment_id=v.experiment_id,
        round=v.round, sha256=v.sha256, size=v.size, stage=str(v.stage), notes=v.notes, created_by=v.created_by,
        created_at=v.created_at, manifest_key=v.manifest_key, manifest_sha256=v.manifest_sha256)


def _name_actions(v: RegistryVersion, owner: str) -> list:
    actions = [RegistryNameItem.name.set(v.name), RegistryNameItem.owner.set(RegistryNameItem.owner | owner),
               RegistryNameItem.created_at.set(RegistryNameItem.created_at | v.created_at),
               RegistryNameItem.updated_at.set(v.created_at), RegistryNameItem.versions.add(1)]
    actions.append(RegistryNameItem.latest_version.set(v.version))
    if v.stage == Stage.PRODUCTION:
        actions.append(RegistryNameItem.production_version.set(v.version))
    return actions


def _production_is(version: str | None):
    if version is None:
        return RegistryNameItem.production_version.does_not_exist()
    return RegistryNameItem.production_version == version


def _name_condition(owner: str, enforce_owner: bool, demote: RegistryVersion | None, stage: Stage):
    condition = None
    if enforce_owner:
        condition = RegistryNameItem.owner.does_not_exist() | (RegistryNameItem.owner == owner)
    if stage == Stage.PRODUCTION:
        expected = _production_is(demote.version if demote else None)
        condition = expected if condition is None else condition & expected
    return condition


def _demote(t, old: RegistryVersion) -> None:
    t.update(RegistryVersionItem(reg_pk(old.name), version_sk(old.version)),
             actions=[RegistryVersionItem.stage.set(str(Stage.NONE))],
             condition=RegistryVersionItem.stage == str(Stage.PRODUCTION))
    t.update(LinkItem(exp_pk(old.experiment_id), _link_reg_sk(old.name, old.version)),
             actions=[LinkItem.stage.set(str(Stage.NONE))])


class LineageRepository:
    def create_fork(self, exp: Experiment, spec: list[dict], sha256: str, first_round: RoundRecord,
                    parent: RoundRef, parent_manifest_sha256: str | None) -> bool:
        """A RUNNING experiment with version 0 and round 1 OPEN, its parent link and the parent's
        child link, in one transaction that also checks the parent's round is still there."""
        item = experiment_item(exp)
        item.status, item.model_spec, item.model_sha256 = str(ExperimentStatus.RUNNING), spec, sha256
        item.model_version, item.initial_sha256, item.current_round = 0, sha256, 1
        item.initial_version_id = exp.initial_version_id

        def build(t):
            t.save(item, condition=ExperimentItem.pk.does_not_exist())
            t.save(round_item(first_round), condition=RoundItem.pk.does_not_exist())
            t.save(LinkItem(exp_pk(exp.id), PARENT_SK, kind="parent", other_id=parent.experiment_id,
                            round=parent.round, manifest_sha256=parent_manifest_sha256, created_at=exp.created_at))
            t.save(LinkItem(exp_pk(parent.experiment_id), f"LINK#CHILD#{exp.created_at}#{exp.id}", kind="child",
                            other_id=exp.id, round=parent.round, created_at=exp.created_at))
            if parent.round == 0:
                t.condition_check(ExperimentItem, exp_pk(parent.experiment_id), "META",
                                  condition=ExperimentItem.initial_sha256.exists())
            else:
                t.condition_check(RoundItem, exp_pk(parent.experiment_id), round_sk(parent.round),
                                  condition=state_in(RoundItem.state, "create_fork.parent_round"))
        return not transact(build)

    def get_lineage(self, experiment_id: str) -> Lineage:
        """Parent, children (oldest first) and registry versions: one query of the partition."""
        parent, children, registry, manifest = None, [], [], None
        for link in LinkItem.query(exp_pk(experiment_id), LinkItem.sk.startswith("LINK#"), limit=MAX_LINKS):
            if link.kind == "parent":
                parent, manifest = RoundRef(link.other_id, int(link.round)), link.manifest_sha256
            elif link.kind == "child":
                children.append(RoundRef(link.other_id, int(link.round)))
            elif link.kind == "registry":
                registry.append({"name": link.name, "version": link.version, "round": int(link.round),
                                 "stage": link.stage})
        return Lineage(parent, children, registry, manifest)
