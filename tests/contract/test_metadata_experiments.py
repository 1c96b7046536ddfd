"""Contract: tokens, experiments, clients (conditional creates, transitions, pagination)."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from fma.domain.auth import Role
from fma.domain.errors import Conflict, Forbidden, InvalidInput
from fma.domain.experiment import new_round
from fma.domain.states import ExperimentStatus, RoundState

from .contract_records import NOW, experiment, refused_create, running, token


def test_token_round_trips_and_a_second_create_is_refused(connector):
    repo = connector.repo
    rec = token(Role.ENROLLMENT, experiment_id="e1", expires_at=NOW + 60, max_uses=3, name="enroll")
    repo.put_token(rec)
    assert repo.get_token(rec.token_hash) == rec
    with pytest.raises(refused_create()):
        repo.put_token(dataclasses.replace(rec, role=Role.ADMIN))
    assert repo.get_token(rec.token_hash).role == Role.ENROLLMENT
    assert repo.get_token("f" * 64) is None


def test_revoked_token_reads_revoked(connector):
    rec = token()
    connector.repo.put_token(rec)
    connector.repo.revoke_token(rec.token_hash)
    assert connector.repo.get_token(rec.token_hash).revoked is True


def test_token_past_its_expiry_is_never_usable(connector):
    """TTL: the store may drop an expired token or keep it, but never hands it out as usable."""
    rec = token(Role.CLIENT, expires_at=NOW - 1)
    connector.repo.put_token(rec)
    found = connector.repo.get_token(rec.token_hash)
    assert found is None or not found.usable(NOW)


def test_experiment_round_trips_and_ids_are_unique(connector):
    exp = experiment()
    connector.repo.create_experiment(exp)
    assert connector.repo.get_experiment(exp.id) == exp
    with pytest.raises(refused_create()):
        connector.repo.create_experiment(dataclasses.replace(exp, name="other"))
    assert connector.repo.get_experiment(exp.id).name == "exp"
    assert connector.repo.get_experiment("missing") is None


def test_activation_happens_once_with_round_one_open(connector):
    repo = connector.repo
    exp = experiment(deadline_seconds=60)
    repo.create_experiment(exp)
    spec = [{"name": "w", "shape": [2], "dtype": "F32"}]
    repo.set_model_error(exp.id, "NOT_SAFETENSORS: bad")
    assert repo.get_experiment(exp.id).model_error == "NOT_SAFETENSORS: bad"
    assert repo.activate(exp.id, spec, "a" * 64, new_round(exp, 1, NOW), "version-a") is True
    assert repo.activate(exp.id, spec, "c" * 64, new_round(exp, 1, NOW + 5), "version-c") is False
    got = repo.get_experiment(exp.id)
    assert (got.status, got.current_round, got.model_version, got.model_sha256, got.initial_sha256, got.model_spec,
            got.model_error) == (ExperimentStatus.RUNNING, 1, 0, "a" * 64, "a" * 64, spec, None)
    assert got.initial_version_id == "version-a"  # every read of version 0 is pinned to it
    rnd = repo.get_round(exp.id, 1)
    assert (rnd.state, rnd.opened_at, rnd.deadline, rnd.accepted) == (RoundState.OPEN, NOW, NOW + 60, 0)


def test_status_moves_only_from_allowed_states(connector):
    repo = connector.repo
    exp = running(repo)
    paused = repo.set_status(exp.id, {ExperimentStatus.RUNNING}, ExperimentStatus.PAUSED)
    assert paused.status == ExperimentStatus.PAUSED
    with pytest.raises(Conflict) as err:
        repo.set_status(exp.id, {ExperimentStatus.RUNNING}, ExperimentStatus.STOPPED)
    assert err.value.code == "INVALID_TRANSITION"
    assert repo.get_experiment(exp.id).status == ExperimentStatus.PAUSED
    assert repo.finish_experiment(exp.id, ExperimentStatus.COMPLETED) is True
    assert repo.finish_experiment(exp.id, ExperimentStatus.FAILED) is False
    assert repo.get_experiment(exp.id).status == ExperimentStatus.COMPLETED


def _all_pages(fetch):
    items, cursor, pages = [], None, 0
    while True:
        page = fetch(cursor)
        pages += 1
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items, pages


def test_experiments_list_newest_first_in_pages_per_owner(connector):
    repo = connector.repo
    made = []
    for i in range(7):
        exp = experiment(owner="dev-a" if i % 2 else "dev-b", created_at=f"2027-01-01T00:00:{i:02d}Z")
        repo.create_experiment(exp)
        made.append(exp)
    everything, pages = _all_pages(lambda c: repo.list_experiments(None, 3, c))
    assert [e.id for e in everything] == [e.id for e in reversed(made)]
    assert pages >= 3
    mine, _ = _all_pages(lambda c: repo.list_experiments("dev-a", 2, c))
    assert [e.id for e in mine] == [e.id for e in reversed(made) if e.owner == "dev-a"]


def test_tampered_cursor_is_invalid_input(connector):
    for bad in ("!!!", "bm90IGpzb24", "W10="):
        with pytest.raises(InvalidInput):
            connector.repo.list_experiments(None, 2, bad)


def test_registration_consumes_one_use_and_counts_the_client(connector):
    repo = connector.repo
    exp = running(repo)
    enroll = token(Role.ENROLLMENT, experiment_id=exp.id, expires_at=NOW + 3600, max_uses=2)
    repo.put_token(enroll)
    for i in range(2):
        repo.register_client(exp.id, f"c-{i}", None, enroll.token_hash, token(Role.CLIENT, experiment_id=exp.id), NOW)
    with pytest.raises(Forbidden) as err:
        repo.register_client(exp.id, "c-9", None, enroll.token_hash, token(Role.CLIENT), NOW)
    assert err.value.code == "ENROLLMENT_EXHAUSTED"
    assert repo.get_token(enroll.token_hash).uses == 2
    assert repo.get_experiment(exp.id).clients == 2


def test_registration_races_never_exceed_max_uses(connector):
    repo = connector.repo
    exp = running(repo)
    enroll = token(Role.ENROLLMENT, experiment_id=exp.id, max_uses=3)
    repo.put_token(enroll)
    outcomes = []

    def register(i: int) -> None:
        try:
            repo.register_client(exp.id, f"c-{i}", None, enroll.token_hash, token(Role.CLIENT), NOW)
            outcomes.append("ok")
        except (Forbidden, Conflict):
            outcomes.append("refused")

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 3
    assert repo.get_experiment(exp.id).clients == 3
    assert repo.get_token(enroll.token_hash).uses == 3


def test_expired_enrollment_and_closed_experiment_change_nothing(connector):
    repo = connector.repo
    exp = running(repo)
    expired = token(Role.ENROLLMENT, experiment_id=exp.id, expires_at=NOW - 1)
    repo.put_token(expired)
    client = token(Role.CLIENT)
    with pytest.raises(Forbidden):
        repo.register_client(exp.id, "c-1", None, expired.token_hash, client, NOW)
    live = token(Role.ENROLLMENT, experiment_id=exp.id)
    repo.put_token(live)
    repo.finish_experiment(exp.id, ExperimentStatus.COMPLETED)
    with pytest.raises(Conflict) as err:
        repo.register_client(exp.id, "c-1", None, live.token_hash, client, NOW)
    assert err.value.code == "EXPERIMENT_CLOSED"
    assert repo.get_token(client.token_hash) is None
    assert repo.get_token(live.token_hash).uses == 0
    assert repo.get_experiment(exp.id).clients == 0
