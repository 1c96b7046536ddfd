"""Contract: what a round records for the dashboard: what sealed it, when the latest attempt
took its lease, the last error (only its lease owner's while it holds it), refused uploads."""

from __future__ import annotations

from fma.domain.states import RoundState

from .contract_records import NOW, accept_all, running


def test_seal_records_quota_or_deadline(connector):
    repo = connector.repo
    exp = running(repo)
    accept_all(repo, exp.id, ["c-1", "c-2"])
    assert repo.get_round(exp.id, 1).sealed_by is None
    assert repo.seal_round(exp.id, 1, 2, NOW, 60)
    assert repo.get_round(exp.id, 1).sealed_by == "quota"
    other = running(repo)
    assert repo.force_seal(other.id, 1, NOW, 60)
    assert repo.get_round(other.id, 1).sealed_by == "deadline"


def test_lease_start_and_last_error_belong_to_the_lease_holder(connector):
    repo = connector.repo
    exp = running(repo)
    accept_all(repo, exp.id, ["c-1", "c-2"])
    assert repo.record_aggregation_error(exp.id, 1, "too early") is False  # OPEN: nothing to report
    assert repo.seal_round(exp.id, 1, 2, NOW, 60)
    leased = repo.acquire_lease(exp.id, 1, "w1", NOW + 5, 30)
    assert leased.aggregation_started_at == NOW + 5
    assert repo.record_aggregation_error(exp.id, 1, "attempt 1: boom", owner="someone-else") is False
    assert repo.record_aggregation_error(exp.id, 1, "attempt 1: boom" + "x" * 2000, owner="w1")
    rnd = repo.get_round(exp.id, 1)
    assert rnd.state == RoundState.AGGREGATING and rnd.last_error.startswith("attempt 1: boom")
    assert len(rnd.last_error) == 1000 and rnd.attempts == 1
    assert repo.record_aggregation_error(exp.id, 1, "attempt 1: LEASE_EXPIRED")  # the sweeper: no owner
    assert repo.get_round(exp.id, 1).last_error == "attempt 1: LEASE_EXPIRED"


def test_refusals_count_per_client_and_round(connector):
    repo = connector.repo
    exp = running(repo)
    for client, at in (("c-2", NOW), ("c-1", NOW + 1), ("c-2", NOW + 2)):
        repo.record_refusal(exp.id, 1, client, "EXPERIMENT_NOT_RUNNING", "paused", at)
    repo.record_refusal(exp.id, 2, "c-1", "EXPERIMENT_NOT_RUNNING", "paused", NOW)
    found = repo.list_refusals(exp.id, 1)
    assert [(f.client_id, f.count, f.first_at, f.last_at) for f in found] == [
        ("c-1", 1, NOW + 1, NOW + 1), ("c-2", 2, NOW, NOW + 2)]
    assert found[0].code == "EXPERIMENT_NOT_RUNNING" and found[0].reason == "paused"
    assert repo.list_refusals(exp.id, 3) == []
