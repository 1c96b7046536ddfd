"""Contract: the model registry (names, immutable versions, one production version per name)."""

from __future__ import annotations

import pytest

from fma.domain.errors import InvalidInput
from fma.domain.registry import RegistryVersion, Stage, parse_version

from .contract_records import race


def version(text: str, stage: Stage = Stage.NONE, name: str = "digits", exp_id: str = "e-1", n: int = 1,
            by: str = "dev-1") -> RegistryVersion:
    return RegistryVersion(name, text, exp_id, n, "a" * 64, 123, stage, "notes", by, f"2027-01-01T00:00:{n:02d}Z",
                           f"models/{exp_id}/{n:08d}.manifest.json", "m" * 64)


def create(repo, v: RegistryVersion, owner: str = "dev-1", enforce: bool = True,
           demote: RegistryVersion | None = None) -> bool:
    return repo.create_registry_version(v, owner=owner, enforce_owner=enforce, demote=demote)


def snapshot(repo, name: str = "digits") -> tuple:
    page = repo.list_registry_versions(name, 100, None)
    return repo.get_registry_name(name), [(v.version, v.stage) for v in page.items]


def test_a_version_is_created_once_with_its_name(connector):
    repo = connector.repo
    assert repo.get_registry_name("digits") is None and repo.highest_registry_version("digits") is None
    assert create(repo, version("1.0.0")) is True
    got = repo.get_registry_version("digits", "1.0.0")
    assert got == version("1.0.0")
    name = repo.get_registry_name("digits")
    assert (name.owner, name.versions, name.latest_version, name.production_version) == ("dev-1", 1, "1.0.0", None)
    before = snapshot(repo)
    assert create(repo, version("1.0.0", by="dev-9")) is False
    assert create(repo, version("1.0.0", Stage.STAGING)) is False
    assert snapshot(repo) == before
    assert repo.get_registry_version("digits", "1.0.1") is None
    assert repo.get_registry_version("other", "1.0.0") is None


def test_versions_list_highest_first_by_semver_precedence_in_pages(connector):
    repo = connector.repo
    texts = ["1.0.0", "1.10.0", "1.9.0", "2.0.0-rc.1", "2.0.0", "0.1.0", "1.0.0+build.7"]
    for i, text in enumerate(texts):
        assert create(repo, version(text, n=i + 1))
    expected = sorted(texts, key=lambda t: parse_version(t).sort_key, reverse=True)
    assert expected[:3] == ["2.0.0", "2.0.0-rc.1", "1.10.0"]
    seen, cursor = [], None
    while True:
        page = repo.list_registry_versions("digits", 3, cursor)
        seen += [v.version for v in page.items]
        if not (cursor := page.next_cursor):
            break
        assert len(page.items) == 3
    assert seen == expected
    assert repo.highest_registry_version("digits").version == "2.0.0"
    assert repo.get_registry_name("digits").versions == len(texts)
    assert repo.list_registry_versions("nothing", 3, None).items == []


def test_names_list_in_pages_and_tampered_cursors_are_refused(connector):
    repo = connector.repo
    for i, name in enumerate(["b-model", "a-model", "c-model", "d-model"]):
        assert create(repo, version("1.0.0", name=name, n=i + 1))
    first = repo.list_registry_names(3, None)
    rest = repo.list_registry_names(3, first.next_cursor)
    assert [n.name for n in first.items + rest.items] == ["a-model", "b-model", "c-model", "d-model"]
    assert rest.next_cursor is None and len(first.items) == 3
    for bad in ("%%%", "bm90IGpzb24", "WzEsMl0"):
        with pytest.raises(InvalidInput):
            repo.list_registry_names(3, bad)
        with pytest.raises(InvalidInput):
            repo.list_registry_versions("a-model", 3, bad)


def test_a_name_belongs_to_its_first_owner(connector):
    repo = connector.repo
    assert create(repo, version("1.0.0"))
    before = snapshot(repo)
    assert create(repo, version("1.0.1", by="dev-2"), owner="dev-2") is False
    assert snapshot(repo) == before
    assert create(repo, version("1.0.1", by="admin"), owner="admin", enforce=False) is True
    name = repo.get_registry_name("digits")
    assert (name.owner, name.versions, name.latest_version) == ("dev-1", 2, "1.0.1")


def test_production_hand_over_is_one_transaction(connector):
    repo = connector.repo
    v1 = version("1.0.0", Stage.PRODUCTION)
    assert create(repo, v1)
    assert repo.get_registry_name("digits").production_version == "1.0.0"
    before = snapshot(repo)
    assert create(repo, version("1.1.0", Stage.PRODUCTION)) is False  # stale: did not demote 1.0.0
    assert snapshot(repo) == before
    assert create(repo, version("1.1.0", Stage.PRODUCTION), demote=v1) is True
    name, versions = snapshot(repo)
    assert name.production_version == "1.1.0"
    assert versions == [("1.1.0", Stage.PRODUCTION), ("1.0.0", Stage.NONE)]
    before = snapshot(repo)
    assert create(repo, version("1.2.0", Stage.PRODUCTION), demote=v1) is False  # 1.0.0 is no longer production
    assert snapshot(repo) == before


def test_stage_changes_are_conditional_on_what_was_read(connector):
    repo = connector.repo
    v1, v2 = version("1.0.0"), version("1.0.1", n=2)
    assert create(repo, v1) and create(repo, v2)
    assert repo.set_registry_stage(v1, Stage.STAGING, None, "t1") is True
    before = snapshot(repo)
    assert repo.set_registry_stage(v1, Stage.PRODUCTION, None, "t2") is False  # read as none, now staging
    assert snapshot(repo) == before
    staged = repo.get_registry_version("digits", "1.0.0")
    assert repo.set_registry_stage(staged, Stage.PRODUCTION, None, "t3") is True
    assert repo.get_registry_name("digits").production_version == "1.0.0"
    before = snapshot(repo)
    assert repo.set_registry_stage(v2, Stage.PRODUCTION, None, "t4") is False  # production moved meanwhile
    assert snapshot(repo) == before
    current = repo.get_registry_version("digits", "1.0.0")
    assert repo.set_registry_stage(v2, Stage.PRODUCTION, current, "t5") is True
    name, versions = snapshot(repo)
    assert (name.production_version, name.updated_at) == ("1.0.1", "t5")
    assert versions == [("1.0.1", Stage.PRODUCTION), ("1.0.0", Stage.NONE)]
    produced = repo.get_registry_version("digits", "1.0.1")
    assert repo.set_registry_stage(produced, Stage.NONE, None, "t6") is True
    assert repo.get_registry_name("digits").production_version is None


def test_racing_creators_of_one_version_string_have_one_winner(connector):
    repo = connector.repo
    results = race(lambda i: create(repo, version("3.0.0", by=f"dev-1-{i}")))
    assert results.count(True) == 1
    got = repo.get_registry_version("digits", "3.0.0")
    assert got.created_by == f"dev-1-{results.index(True)}"
    assert repo.get_registry_name("digits").versions == 1


def test_racing_next_patch_never_issues_a_version_twice(connector):
    """Each thread takes the next patch after the highest and retries when another took it."""
    repo = connector.repo

    def register(i: int) -> str:
        for _ in range(50):
            highest = repo.highest_registry_version("digits")
            text = parse_version(highest.version).next_patch() if highest else "1.0.0"
            if create(repo, version(text, by=f"t{i}")):
                return text
        raise AssertionError("no version after 50 attempts")

    issued = race(register)
    assert sorted(issued, key=lambda t: parse_version(t).sort_key) == [f"1.0.{k}" for k in range(8)]
    assert repo.get_registry_name("digits").versions == 8
    assert [v.version for v in repo.list_registry_versions("digits", 100, None).items] == [
        f"1.0.{k}" for k in reversed(range(8))]


def test_racing_promotions_leave_exactly_one_production_version(connector):
    repo = connector.repo
    versions = [version(f"1.0.{k}", n=k + 1) for k in range(6)]
    for v in versions:
        assert create(repo, v)

    def promote(i: int) -> bool:
        current = repo.get_registry_name("digits").production_version
        demote = repo.get_registry_version("digits", current) if current else None
        return repo.set_registry_stage(versions[i], Stage.PRODUCTION, demote, f"t{i}")

    results = race(promote, count=len(versions))
    assert results.count(True) >= 1
    _, stages = snapshot(repo)
    production = [text for text, stage in stages if stage == Stage.PRODUCTION]
    assert production == [repo.get_registry_name("digits").production_version]
