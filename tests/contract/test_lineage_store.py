"""Contract: forks (an experiment started from a published round of another) and lineage links."""

from __future__ import annotations

import dataclasses

from fma.domain.experiment import new_round
from fma.domain.registry import RegistryVersion, RoundRef, Stage
from fma.domain.states import ExperimentStatus, RoundState

from .contract_records import NOW, accept_all, experiment, race, running

SPEC = [{"name": "w", "shape": [2], "dtype": "F32"}]


def published(repo, total_rounds: int = 3):
    """A RUNNING experiment whose round 1 is PUBLISHED (round 2 OPEN)."""
    exp = running(repo, total_rounds=total_rounds)
    accept_all(repo, exp.id, ["c-1", "c-2"])
    assert repo.seal_round(exp.id, 1, 2, NOW, 60) and repo.acquire_lease(exp.id, 1, "w", NOW, 60)
    assert repo.publish_round(exp.id, 1, "w", sha256="1" * 64, metrics={}, info={}, seconds=0.1, now=NOW + 1,
                              next_round=new_round(exp, 2, NOW + 1))
    return exp


def fork(repo, parent_id: str, n: int, created_at: str = "2027-01-02T00:00:00Z", manifest: str | None = "f" * 64):
    child = experiment(created_at=created_at)
    ok = repo.create_fork(child, SPEC, "1" * 64, new_round(child, 1, NOW), RoundRef(parent_id, n), manifest)
    return child, ok


def test_fork_starts_running_with_its_parent_link_and_the_parents_child_link(connector):
    repo = connector.repo
    parent = published(repo)
    child, ok = fork(repo, parent.id, 1)
    assert ok is True
    got = repo.get_experiment(child.id)
    assert (got.status, got.model_version, got.current_round, got.model_sha256, got.initial_sha256,
            got.model_spec) == (ExperimentStatus.RUNNING, 0, 1, "1" * 64, "1" * 64, SPEC)
    assert repo.get_round(child.id, 1).state == RoundState.OPEN
    lineage = repo.get_lineage(child.id)
    assert (lineage.parent, lineage.children, lineage.parent_manifest_sha256) == (
        RoundRef(parent.id, 1), [], "f" * 64)
    assert repo.get_lineage(parent.id).children == [RoundRef(child.id, 1)]
    assert repo.get_lineage(parent.id).parent is None


def test_children_list_oldest_first_and_a_fork_of_round_zero(connector):
    repo = connector.repo
    parent = published(repo)
    late, ok_late = fork(repo, parent.id, 1, created_at="2027-03-01T00:00:00Z")
    early, ok_early = fork(repo, parent.id, 0, created_at="2027-02-01T00:00:00Z", manifest=None)
    assert ok_late and ok_early
    assert repo.get_lineage(parent.id).children == [RoundRef(early.id, 0), RoundRef(late.id, 1)]
    assert repo.get_lineage(early.id).parent_manifest_sha256 is None
    grandchild, ok = fork(repo, late.id, 0)
    assert ok and repo.get_lineage(late.id).children == [RoundRef(grandchild.id, 0)]
    assert repo.get_lineage(late.id).parent == RoundRef(parent.id, 1)


def test_fork_of_an_unpublished_round_changes_nothing(connector):
    repo = connector.repo
    parent = published(repo)
    pending = experiment()
    repo.create_experiment(pending)  # PENDING_MODEL: no round 0 model yet
    for parent_id, n in [(parent.id, 2), (parent.id, 9), ("no-such-experiment", 1), (pending.id, 0)]:
        child, ok = fork(repo, parent_id, n)
        assert ok is False
        assert repo.get_experiment(child.id) is None and repo.get_round(child.id, 1) is None
        assert repo.get_lineage(child.id).parent is None
    assert repo.get_lineage(parent.id).children == []
    assert repo.get_lineage(pending.id).children == []


def test_fork_with_an_existing_id_changes_nothing(connector):
    repo = connector.repo
    parent = published(repo)
    child, ok = fork(repo, parent.id, 1)
    assert ok
    again = dataclasses.replace(child, name="again", created_at="2027-05-05T00:00:00Z")
    assert repo.create_fork(again, SPEC, "2" * 64, new_round(again, 1, NOW), RoundRef(parent.id, 0), None) is False
    assert repo.get_experiment(child.id).name == child.name
    assert repo.get_lineage(parent.id).children == [RoundRef(child.id, 1)]
    assert repo.get_lineage(child.id).parent == RoundRef(parent.id, 1)


def test_racing_forks_with_one_id_have_one_winner(connector):
    repo = connector.repo
    parent = published(repo)
    child = experiment()
    results = race(lambda i: repo.create_fork(child, SPEC, "1" * 64, new_round(child, 1, NOW),
                                              RoundRef(parent.id, i % 2), None))
    assert results.count(True) == 1
    assert len(repo.get_lineage(parent.id).children) == 1


def test_registry_versions_appear_in_their_experiments_lineage_with_their_stage(connector):
    repo = connector.repo
    exp = published(repo)

    def v(text: str, stage: Stage) -> RegistryVersion:
        return RegistryVersion("digits", text, exp.id, 1, "1" * 64, 10, stage, None, "dev-1", "t",
                               f"models/{exp.id}/00000001.manifest.json", "m" * 64)

    assert repo.create_registry_version(v("1.0.0", Stage.PRODUCTION), owner="dev-1", enforce_owner=True, demote=None)
    assert repo.create_registry_version(v("1.0.1", Stage.PRODUCTION), owner="dev-1", enforce_owner=True,
                                        demote=v("1.0.0", Stage.PRODUCTION))
    assert repo.get_lineage(exp.id).registry == [
        {"name": "digits", "version": "1.0.0", "round": 1, "stage": "none"},
        {"name": "digits", "version": "1.0.1", "round": 1, "stage": "production"}]
    assert repo.set_registry_stage(v("1.0.1", Stage.PRODUCTION), Stage.STAGING, None, "t2")
    assert repo.get_lineage(exp.id).registry[1]["stage"] == "staging"
