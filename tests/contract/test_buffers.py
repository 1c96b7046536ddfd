"""Contract (issue 15, async mode): every accepted update joins exactly one buffer, a buffer
seals once and opens the next in the same transaction, versions publish once and in order."""

from __future__ import annotations

import threading

from fma.domain.experiment import new_round
from fma.domain.states import ExperimentStatus, RoundState, UpdateStatus

from .contract_records import NOW, running, update
from .test_metadata_rounds import race

ASYNC = {"mode": "async", "buffer_size": 3, "max_staleness": 2, "total_rounds": 3}


def async_running(repo, **policy):
    return running(repo, **(ASYNC | policy))


def _accept(repo, exp_id: str, client: str, n: int, version: int) -> str:
    repo.begin_upload(exp_id, n, client, NOW)
    return repo.accept_buffered(update(exp_id, client, n), version, 3)


def _seal(repo, exp, version: int, quota: int = 3) -> bool:
    following = new_round(exp, version + 1, NOW) if version < exp.policy.total_rounds else None
    return repo.seal_buffer(exp.id, version, quota, NOW, 60, following)


def _publish(repo, exp_id: str, version: int, owner: str = "w", complete: bool = False) -> bool:
    return repo.publish_version(exp_id, version, owner, sha256=f"{version}" * 64, metrics={}, info={}, seconds=1.0,
                                now=NOW, complete=complete)


def test_accepted_update_records_its_buffer_and_is_listed_there(connector):
    repo = connector.repo
    exp = async_running(repo)
    assert _accept(repo, exp.id, "c-1", 1, 1) == "accepted"
    got = repo.get_update(exp.id, 1, "c-1")
    assert (got.status, got.applied_in) == (UpdateStatus.ACCEPTED, 1)
    assert [(u.round, u.client_id, u.applied_in) for u in repo.list_buffer(exp.id, 1)] == [(1, "c-1", 1)]
    assert repo.get_round(exp.id, 1).accepted == 1 and repo.list_buffer(exp.id, 2) == []


def test_duplicate_accepts_join_one_buffer_once(connector):
    repo = connector.repo
    exp = async_running(repo)
    repo.begin_upload(exp.id, 1, "c-1", NOW)
    results = race(lambda i: repo.accept_buffered(update(exp.id, "c-1"), 1, 3))
    assert sorted(results) == ["accepted"] + ["duplicate"] * 7
    assert repo.get_round(exp.id, 1).accepted == 1 and len(repo.list_buffer(exp.id, 1)) == 1


def test_accept_refused_into_a_sealed_buffer_or_while_paused(connector):
    repo = connector.repo
    exp = async_running(repo, buffer_size=1)
    assert _accept(repo, exp.id, "c-1", 1, 1) == "accepted"
    assert _seal(repo, exp, 1, 1)
    assert _accept(repo, exp.id, "c-2", 1, 1) == "closed"
    assert repo.get_update(exp.id, 1, "c-2").status == UpdateStatus.UPLOADING
    repo.set_status(exp.id, {ExperimentStatus.RUNNING}, ExperimentStatus.PAUSED)
    assert repo.accept_buffered(update(exp.id, "c-2"), 2, 3) == "inactive"
    assert repo.get_round(exp.id, 2).accepted == 0 and repo.list_buffer(exp.id, 2) == []


def test_a_full_buffer_takes_no_more_than_its_capacity(connector):
    repo = connector.repo
    exp = async_running(repo, buffer_size=2)
    assert _accept(repo, exp.id, "c-1", 1, 1) == "accepted" and _accept(repo, exp.id, "c-2", 1, 1) == "accepted"
    repo.begin_upload(exp.id, 1, "c-3", NOW)
    assert repo.accept_buffered(update(exp.id, "c-3"), 1, 2) == "full"
    assert repo.get_round(exp.id, 1).accepted == 2 and repo.get_update(exp.id, 1, "c-3").applied_in is None


def test_seal_opens_the_next_buffer_as_current_in_one_transaction_with_one_winner(connector):
    repo = connector.repo
    exp = async_running(repo)
    for i in range(3):
        assert _accept(repo, exp.id, f"c-{i}", 1, 1) == "accepted"
    assert not _seal(repo, exp, 1, quota=4)
    assert sorted(race(lambda i: _seal(repo, exp, 1))) == [False] * 7 + [True]
    assert repo.get_round(exp.id, 1).state == RoundState.SEALED
    assert repo.get_round(exp.id, 2).state == RoundState.OPEN and repo.get_experiment(exp.id).current_round == 2


def test_last_buffer_seals_without_opening_another(connector):
    repo = connector.repo
    exp = async_running(repo, total_rounds=1, buffer_size=1)
    assert _accept(repo, exp.id, "c-1", 1, 1) == "accepted"
    assert _seal(repo, exp, 1, 1)
    assert repo.get_round(exp.id, 2) is None and repo.get_experiment(exp.id).current_round == 1


def test_buffer_race_puts_each_update_in_exactly_one_consecutive_version(connector):
    """Many updates arrive together; each accept that finds its buffer sealed moves to the next."""
    repo = connector.repo
    exp = async_running(repo, total_rounds=5)
    clients = [f"c-{i:02d}" for i in range(12)]
    for c in clients:
        repo.begin_upload(exp.id, 1, c, NOW)
    lock = threading.Lock()
    sealed: list[int] = []

    def seal(version: int) -> None:
        if _seal(repo, exp, version):
            with lock:
                sealed.append(version)

    def arrive(i: int) -> str:
        for _ in range(100):
            version = repo.get_experiment(exp.id).current_round
            result = repo.accept_buffered(update(exp.id, clients[i]), version, 3)
            if result == "full":
                seal(version)
            elif result != "closed":
                break
        seal(version)
        return result

    assert race(arrive, count=12) == ["accepted"] * 12
    buffers = {v: [u.client_id for u in repo.list_buffer(exp.id, v)] for v in range(1, 6)}
    joined = [c for v in buffers for c in buffers[v]]
    assert sorted(joined) == clients  # every update in exactly one buffer
    assert all(repo.get_update(exp.id, 1, c).applied_in in buffers for c in clients)
    assert {v: len(b) for v, b in buffers.items() if b} == {1: 3, 2: 3, 3: 3, 4: 3}
    assert sorted(sealed) == [1, 2, 3, 4]
    assert all(repo.get_round(exp.id, v).accepted == 3 for v in (1, 2, 3, 4))


def test_versions_publish_once_and_in_order(connector):
    repo = connector.repo
    exp = async_running(repo, buffer_size=1)
    for version in (1, 2):
        assert _accept(repo, exp.id, f"c-{version}", 1, version) == "accepted"
        assert _seal(repo, exp, version, 1)
    assert repo.acquire_lease(exp.id, 2, "w", NOW, 60) is not None
    assert not _publish(repo, exp.id, 2)  # version 1 is not out yet
    assert repo.acquire_lease(exp.id, 1, "w", NOW, 60) is not None
    assert not _publish(repo, exp.id, 1, owner="other")
    assert sorted(race(lambda i: _publish(repo, exp.id, 1))) == [False] * 7 + [True]
    assert _publish(repo, exp.id, 2)
    got = repo.get_experiment(exp.id)
    assert (got.model_version, got.model_sha256, got.current_round, got.status) == (
        2, "2" * 64, 3, ExperimentStatus.RUNNING)
    assert repo.get_round(exp.id, 1).state == RoundState.PUBLISHED


def test_last_version_completes_the_experiment(connector):
    repo = connector.repo
    exp = async_running(repo, total_rounds=1, buffer_size=1)
    assert _accept(repo, exp.id, "c-1", 1, 1) == "accepted"
    assert _seal(repo, exp, 1, 1) and repo.acquire_lease(exp.id, 1, "w", NOW, 60)
    assert _publish(repo, exp.id, 1, complete=True)
    assert repo.get_experiment(exp.id).status == ExperimentStatus.COMPLETED


def test_stop_fails_the_open_buffer_and_blocks_publishing_a_sealed_one(connector):
    repo = connector.repo
    exp = async_running(repo, buffer_size=1)
    assert _accept(repo, exp.id, "c-1", 1, 1) == "accepted"
    assert _seal(repo, exp, 1, 1) and repo.acquire_lease(exp.id, 1, "w", NOW, 60)
    assert repo.stop_experiment(exp.id, {ExperimentStatus.RUNNING, ExperimentStatus.PAUSED}, "stopped")
    assert repo.get_round(exp.id, 2).state == RoundState.FAILED
    assert not _publish(repo, exp.id, 1)
    got = repo.get_experiment(exp.id)
    assert (got.status, got.model_version) == (ExperimentStatus.STOPPED, 0)
