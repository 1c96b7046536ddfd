"""Contract: what issue 11's API plane needs from a connector (archive, client revocation,
Idempotency-Key records, minted_by, strict cursors)."""

from __future__ import annotations

import base64
import json

import pytest

from fma.domain.auth import Role
from fma.domain.errors import Forbidden, InvalidInput, NotFound

from .contract_records import NOW, experiment, running, token


def test_archived_experiments_list_apart_and_come_back(connector):
    repo = connector.repo
    made = [experiment(owner="dev-a", created_at=f"2027-01-01T00:00:{i:02d}Z") for i in range(3)]
    for exp in made:
        repo.create_experiment(exp)
    archived = repo.set_archived(made[1].id, "dev-a", True)
    assert archived.archived is True and repo.get_experiment(made[1].id).archived is True
    for owner in (None, "dev-a"):
        assert [e.id for e in repo.list_experiments(owner, 10, None).items] == [made[2].id, made[0].id]
        assert [e.id for e in repo.list_experiments(owner, 10, None, archived=True).items] == [made[1].id]
    repo.set_archived(made[1].id, "dev-a", False)
    assert [e.id for e in repo.list_experiments("dev-a", 10, None).items] == [e.id for e in reversed(made)]
    assert repo.list_experiments("dev-a", 10, None, archived=True).items == []
    with pytest.raises(NotFound):
        repo.set_archived("missing", "dev-a", True)


def test_cursor_of_another_query_or_with_unknown_keys_is_invalid_cursor(connector):
    repo = connector.repo
    for i in range(3):
        repo.create_experiment(experiment(owner="dev-a", created_at=f"2027-01-01T00:00:{i:02d}Z"))
    cursor = repo.list_experiments("dev-a", 1, None).next_cursor
    assert cursor is not None
    decoded = json.loads(base64.urlsafe_b64decode(cursor))
    extra = decoded | {"zz": {"S": "x"}} if isinstance(decoded, dict) else [*decoded, "x"]
    tampered = base64.urlsafe_b64encode(json.dumps(extra).encode()).decode()
    for bad in (tampered, "A" * 5000, cursor + "é"):
        with pytest.raises(InvalidInput) as err:
            repo.list_experiments("dev-a", 1, bad)
        assert err.value.code == "INVALID_CURSOR"
    with pytest.raises(InvalidInput) as err:
        repo.list_experiments("dev-b", 1, cursor)  # another owner's list
    assert err.value.code == "INVALID_CURSOR"
    exp = running(repo)
    with pytest.raises(InvalidInput) as err:
        repo.list_rounds(exp.id, 1, cursor)  # an experiments cursor on the rounds list
    assert err.value.code == "INVALID_CURSOR"


def test_revoke_client_revokes_its_token_and_uncounts_it_once(connector):
    repo = connector.repo
    exp = running(repo)
    enroll = token(Role.ENROLLMENT, experiment_id=exp.id)
    repo.put_token(enroll)
    client = token(Role.CLIENT, experiment_id=exp.id)
    repo.register_client(exp.id, "c-1", None, enroll.token_hash, client, NOW)
    assert repo.get_client_token_hash(exp.id, "c-1") == (client.token_hash, False)
    assert repo.get_client_token_hash(exp.id, "c-2") is None
    assert repo.revoke_client(exp.id, "c-1", client.token_hash) is True
    assert repo.get_client_token_hash(exp.id, "c-1") == (client.token_hash, True)
    assert repo.get_token(client.token_hash).revoked is True
    assert repo.get_experiment(exp.id).clients == 0
    assert repo.revoke_client(exp.id, "c-1", client.token_hash) is False
    assert repo.get_experiment(exp.id).clients == 0


def test_revoked_enrollment_token_is_token_revoked_and_changes_nothing(connector):
    repo = connector.repo
    exp = running(repo)
    enroll = token(Role.ENROLLMENT, experiment_id=exp.id)
    repo.put_token(enroll)
    repo.revoke_token(enroll.token_hash)
    client = token(Role.CLIENT, experiment_id=exp.id)
    with pytest.raises(Forbidden) as err:
        repo.register_client(exp.id, "c-1", None, enroll.token_hash, client, NOW)
    assert err.value.code == "TOKEN_REVOKED"
    assert repo.get_token(client.token_hash) is None and repo.get_client_token_hash(exp.id, "c-1") is None
    assert repo.get_experiment(exp.id).clients == 0


def test_minted_by_round_trips(connector):
    rec = token(Role.ENROLLMENT, experiment_id="e1", minted_by="dev-7")
    connector.repo.put_token(rec)
    assert connector.repo.get_token(rec.token_hash).minted_by == "dev-7"


def test_idempotency_record_claim_complete_replay_release(connector):
    repo = connector.repo
    assert repo.claim_idempotency("r1", "fp", NOW, 60, 86400) is None
    running_claim = repo.claim_idempotency("r1", "fp", NOW + 1, 60, 86400)
    assert (running_claim.fingerprint, running_claim.state) == ("fp", "IN_PROGRESS")
    repo.complete_idempotency("r1", 201, "sealed-body")
    done = repo.claim_idempotency("r1", "other", NOW + 2, 60, 86400)
    assert (done.fingerprint, done.state, done.status, done.body) == ("fp", "COMPLETED", 201, "sealed-body")
    repo.release_idempotency("r1")  # a completed record stays
    assert repo.claim_idempotency("r1", "fp", NOW + 3, 60, 86400).state == "COMPLETED"
    assert repo.claim_idempotency("r1", "fp", NOW + 86401, 60, 86400) is None  # expired: claimable again


def test_idempotency_released_or_stale_claim_can_be_claimed_again(connector):
    repo = connector.repo
    assert repo.claim_idempotency("r2", "fp", NOW, 60, 86400) is None
    repo.release_idempotency("r2")
    assert repo.claim_idempotency("r2", "fp", NOW + 1, 60, 86400) is None
    assert repo.claim_idempotency("r2", "other", NOW + 120, 60, 86400).state == "IN_PROGRESS"  # not its claim
    assert repo.claim_idempotency("r2", "fp", NOW + 120, 60, 86400) is None  # its own crashed claim
