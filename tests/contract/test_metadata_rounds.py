"""Contract: updates accepted and counted exactly once, one seal winner, leases, publish, the sweep."""

from __future__ import annotations

import pytest

from fma.domain.errors import Conflict
from fma.domain.experiment import new_round
from fma.domain.records import EvaluationRecord
from fma.domain.states import ExperimentStatus, RoundState, UpdateStatus

from .contract_records import NOW, accept_all, race, running, update


def test_racing_accepts_of_one_update_count_it_once(connector):
    repo = connector.repo
    exp = running(repo)
    repo.begin_upload(exp.id, 1, "c-1", NOW)
    results = race(lambda i: repo.accept_update(update(exp.id, "c-1")))
    assert sorted(results) == ["accepted"] + ["duplicate"] * 7
    assert repo.get_round(exp.id, 1).accepted == 1
    got = repo.get_update(exp.id, 1, "c-1")
    assert (got.status, got.num_examples, got.metrics, got.sha256, got.size) == (
        UpdateStatus.ACCEPTED, 5, {"loss": 0.5}, "b" * 64, 100)


def test_racing_accepts_of_many_clients_all_count(connector):
    repo = connector.repo
    exp = running(repo)
    results = race(lambda i: repo.accept_update(update(exp.id, f"c-{i}")))
    assert results == ["accepted"] * 8
    assert repo.get_round(exp.id, 1).accepted == 8
    assert [u.client_id for u in repo.list_updates(exp.id, 1)] == [f"c-{i}" for i in range(8)]


def test_accept_refused_on_a_closed_round_or_a_paused_experiment(connector):
    repo = connector.repo
    exp = running(repo)
    repo.set_status(exp.id, {ExperimentStatus.RUNNING}, ExperimentStatus.PAUSED)
    repo.begin_upload(exp.id, 1, "c-1", NOW)
    assert repo.accept_update(update(exp.id, "c-1")) == "inactive"
    assert repo.get_update(exp.id, 1, "c-1").status == UpdateStatus.UPLOADING
    assert repo.accept_update(update(exp.id, "c-1", n=2)) == "closed"
    assert repo.get_round(exp.id, 1).accepted == 0


def test_upload_reopens_after_rejection_but_not_after_acceptance(connector):
    repo = connector.repo
    exp = running(repo)
    repo.begin_upload(exp.id, 1, "c-1", NOW)
    bad = update(exp.id, "c-1")
    bad.reason = "NOT_SAFETENSORS: x"
    assert repo.reject_update(bad) is True
    bad.reason = "NOT_SAFETENSORS: y"
    assert repo.reject_update(bad) is False  # counted once; the reason is refreshed
    assert repo.get_update(exp.id, 1, "c-1").reason == "NOT_SAFETENSORS: y"
    assert repo.get_round(exp.id, 1).rejected == 1
    repo.begin_upload(exp.id, 1, "c-1", NOW + 2)
    assert repo.get_update(exp.id, 1, "c-1").status == UpdateStatus.UPLOADING
    assert repo.accept_update(update(exp.id, "c-1")) == "accepted"
    assert repo.reject_update(bad) is False
    with pytest.raises(Conflict) as err:
        repo.begin_upload(exp.id, 1, "c-1", NOW + 3)
    assert err.value.code == "ALREADY_SUBMITTED"
    assert repo.get_update(exp.id, 1, "c-1").status == UpdateStatus.ACCEPTED


def test_late_update_counted_once_and_never_over_an_acceptance(connector):
    repo = connector.repo
    exp = running(repo)
    accept_all(repo, exp.id, ["c-1"])
    assert repo.mark_late(update(exp.id, "c-1")) is False
    assert repo.mark_late(update(exp.id, "c-2")) is True
    assert repo.mark_late(update(exp.id, "c-2")) is False
    rnd = repo.get_round(exp.id, 1)
    assert (rnd.accepted, rnd.late) == (1, 1)
    assert repo.get_update(exp.id, 1, "c-2").status == UpdateStatus.LATE


def test_seal_needs_the_quota_and_has_one_winner(connector):
    repo = connector.repo
    exp = running(repo)
    accept_all(repo, exp.id, ["c-1"])
    assert repo.seal_round(exp.id, 1, 2, NOW, 60) is False
    accept_all(repo, exp.id, ["c-2"])
    assert race(lambda i: repo.seal_round(exp.id, 1, 2, NOW, 60)).count(True) == 1
    rnd = repo.get_round(exp.id, 1)
    assert (rnd.state, rnd.sealed_at) == (RoundState.SEALED, NOW)
    assert repo.accept_update(update(exp.id, "c-3")) == "closed"
    assert repo.get_round(exp.id, 1).accepted == 2


def test_lease_has_one_holder_until_it_expires(connector):
    repo = connector.repo
    exp = running(repo)
    accept_all(repo, exp.id, ["c-1", "c-2"])
    assert repo.seal_round(exp.id, 1, 2, NOW, 60)
    held = race(lambda i: repo.acquire_lease(exp.id, 1, f"w{i}", NOW + 1, 30))
    winners = [h for h in held if h is not None]
    assert len(winners) == 1 and winners[0].state == RoundState.AGGREGATING and winners[0].attempts == 1
    assert repo.acquire_lease(exp.id, 1, "late", NOW + 20, 30) is None
    reclaimed = repo.acquire_lease(exp.id, 1, "next", NOW + 32, 30)
    assert (reclaimed.lease_owner, reclaimed.attempts, reclaimed.lease_expires) == ("next", 2, NOW + 62)
    assert repo.publish_round(exp.id, 1, winners[0].lease_owner, sha256="d" * 64, metrics={}, info={},
                              seconds=1.0, now=NOW + 33, next_round=None) is False
    assert repo.get_round(exp.id, 1).state == RoundState.AGGREGATING


def _publish(repo, exp, n, owner, now, last=False):
    nxt = None if last else new_round(exp, n + 1, now)
    return repo.publish_round(exp.id, n, owner, sha256=f"{n}" * 64, metrics={"loss": 0.25}, info={"timings": {}},
                              seconds=0.5, now=now, next_round=nxt)


def test_publish_moves_round_and_experiment_together_once(connector):
    repo = connector.repo
    exp = running(repo, total_rounds=2)
    accept_all(repo, exp.id, ["c-1", "c-2"])
    repo.seal_round(exp.id, 1, 2, NOW, 60)
    repo.acquire_lease(exp.id, 1, "w", NOW, 60)
    assert _publish(repo, exp, 1, "w", NOW + 2) is True
    assert _publish(repo, exp, 1, "w", NOW + 3) is False
    rnd, nxt, got = repo.get_round(exp.id, 1), repo.get_round(exp.id, 2), repo.get_experiment(exp.id)
    assert (rnd.state, rnd.model_sha256, rnd.metrics, rnd.lease_owner, rnd.aggregation_seconds) == (
        RoundState.PUBLISHED, "1" * 64, {"loss": 0.25}, None, 0.5)
    assert nxt.state == RoundState.OPEN
    assert (got.current_round, got.model_version, got.model_sha256, got.status) == (2, 1, "1" * 64,
                                                                                     ExperimentStatus.RUNNING)
    assert repo.list_due(NOW + 10_000) == []
    for c in ("c-1", "c-2"):
        assert repo.mark_applied(exp.id, 1, c, NOW + 4) is True
        assert repo.mark_applied(exp.id, 1, c, NOW + 5) is False
    accept_all(repo, exp.id, ["c-1", "c-2"], n=2)
    repo.seal_round(exp.id, 2, 2, NOW, 60)
    repo.acquire_lease(exp.id, 2, "w", NOW, 60)
    assert _publish(repo, exp, 2, "w", NOW + 6, last=True) is True
    assert repo.get_experiment(exp.id).status == ExperimentStatus.COMPLETED


def test_publish_refused_when_the_experiment_moved_on_changes_nothing(connector):
    repo = connector.repo
    exp = running(repo)
    accept_all(repo, exp.id, ["c-1", "c-2"])
    repo.seal_round(exp.id, 1, 2, NOW, 60)
    repo.acquire_lease(exp.id, 1, "w", NOW, 60)
    repo.finish_experiment(exp.id, ExperimentStatus.STOPPED)
    assert _publish(repo, exp, 1, "w", NOW + 2, last=True) is False
    assert repo.get_round(exp.id, 1).state == RoundState.AGGREGATING
    assert repo.get_experiment(exp.id).model_version == 0


def test_due_rounds_deadlines_and_failure(connector):
    repo = connector.repo
    exp = running(repo, deadline_seconds=60)
    assert repo.list_due(NOW + 59) == []
    assert [r.round for r in repo.list_due(NOW + 61)] == [1]
    assert repo.extend_deadline(exp.id, 1, NOW + 120) is True
    assert repo.list_due(NOW + 61) == []
    assert repo.get_round(exp.id, 1).deadline == NOW + 120
    assert repo.force_seal(exp.id, 1, NOW + 121, 30) is True
    assert repo.force_seal(exp.id, 1, NOW + 121, 30) is False
    assert repo.extend_deadline(exp.id, 1, NOW + 500) is False
    assert [r.state for r in repo.list_due(NOW + 152)] == [RoundState.SEALED]
    assert repo.push_due(exp.id, 1, NOW + 400, RoundState.SEALED) is True
    assert repo.push_due(exp.id, 1, NOW + 400, RoundState.OPEN) is False
    assert repo.list_due(NOW + 399) == []
    assert repo.fail_round(exp.id, 1, "AGGREGATION_FAILED: x" * 100) is True
    assert repo.fail_round(exp.id, 1, "again") is False
    rnd = repo.get_round(exp.id, 1)
    assert rnd.state == RoundState.FAILED and rnd.reason.startswith("AGGREGATION_FAILED") and len(rnd.reason) <= 1000
    assert repo.get_experiment(exp.id).status == ExperimentStatus.FAILED
    assert repo.list_due(NOW + 10_000) == []


def test_due_lists_are_oldest_first_and_bounded(connector):
    repo = connector.repo
    exps = [running(repo, deadline_seconds=60 + 10 * i) for i in range(3)]
    assert [r.experiment_id for r in repo.list_due(NOW + 1000)] == [e.id for e in exps]
    assert len(repo.list_due(NOW + 1000, limit=2)) == 2


def test_overdue_uploads_are_listed_until_pushed_or_finished(connector):
    repo = connector.repo
    exp = running(repo)
    repo.begin_upload(exp.id, 1, "c-1", NOW, grace=30)
    repo.begin_upload(exp.id, 1, "c-2", NOW, grace=10)
    assert repo.list_due_uploads(NOW + 5) == []
    assert [u.client_id for u in repo.list_due_uploads(NOW + 31)] == ["c-2", "c-1"]
    repo.push_upload_due(exp.id, 1, "c-2", NOW + 100)
    repo.push_upload_due(exp.id, 1, "c-1", None)
    assert repo.list_due_uploads(NOW + 50) == []
    assert [u.client_id for u in repo.list_due_uploads(NOW + 101)] == ["c-2"]
    assert repo.accept_update(update(exp.id, "c-2")) == "accepted"
    assert repo.list_due_uploads(NOW + 10_000) == []


def test_rounds_list_in_pages_oldest_first(connector):
    repo = connector.repo
    exp = running(repo, total_rounds=10, min_updates=1)
    for n in range(1, 5):
        accept_all(repo, exp.id, ["c-1"], n=n)
        repo.seal_round(exp.id, n, 1, NOW, 60)
        repo.acquire_lease(exp.id, n, "w", NOW, 60)
        assert _publish(repo, exp, n, "w", NOW + n)
    seen, cursor = [], None
    while True:
        page = repo.list_rounds(exp.id, 2, cursor)
        assert len(page.items) <= 2
        seen.extend(r.round for r in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [1, 2, 3, 4, 5]


def test_evaluations_once_per_client_and_round(connector):
    repo = connector.repo
    exp = running(repo)
    repo.put_evaluation(exp.id, EvaluationRecord(0, "c-2", 10, {"accuracy": 0.5}), NOW)
    repo.put_evaluation(exp.id, EvaluationRecord(0, "c-1", 20, {"accuracy": 0.75}), NOW)
    with pytest.raises(Conflict) as err:
        repo.put_evaluation(exp.id, EvaluationRecord(0, "c-1", 5, {"accuracy": 0.0}), NOW)
    assert err.value.code == "ALREADY_EVALUATED"
    assert repo.list_evaluations(exp.id, 0) == [EvaluationRecord(0, "c-1", 20, {"accuracy": 0.75}),
                                                 EvaluationRecord(0, "c-2", 10, {"accuracy": 0.5})]
    assert repo.list_evaluations(exp.id, 1) == []


def test_update_failures_are_counted_then_failed_and_the_client_may_resend(connector):
    repo = connector.repo
    exp = running(repo)
    repo.begin_upload(exp.id, 1, "c-1", NOW)
    assert [repo.note_update_failure(exp.id, 1, "c-1", "boom", NOW + i) for i in range(3)] == [1, 2, 3]
    assert repo.get_update(exp.id, 1, "c-1").reason == "RETRYING: boom"
    assert repo.get_round(exp.id, 1).accepted == 0
    assert repo.fail_update(exp.id, 1, "c-1", "INGEST_FAILED: boom", NOW + 4) is True
    assert repo.fail_update(exp.id, 1, "c-1", "again", NOW + 5) is False
    got = repo.get_update(exp.id, 1, "c-1")
    assert (got.status, got.reason) == (UpdateStatus.FAILED, "INGEST_FAILED: boom")
    assert repo.list_due_uploads(NOW + 10_000) == []
    assert repo.note_update_failure(exp.id, 1, "c-1", "late", NOW + 6) == 0
    repo.begin_upload(exp.id, 1, "c-1", NOW + 7)  # a FAILED update may be sent again
    assert repo.note_update_failure(exp.id, 1, "c-1", "x", NOW + 8) == 1  # counting starts over
    assert repo.accept_update(update(exp.id, "c-1")) == "accepted"
    assert repo.fail_update(exp.id, 1, "c-1", "never", NOW + 9) is False
    assert repo.note_update_failure(exp.id, 2, "c-9", "none", NOW) == 0


def test_sweep_failures_of_a_round_are_counted_while_it_is_live(connector):
    repo = connector.repo
    exp = running(repo)
    assert [repo.note_round_sweep_failure(exp.id, 1, "boom") for _ in range(2)] == [1, 2]
    assert repo.seal_round(exp.id, 1, 0, NOW, 60) and repo.note_round_sweep_failure(exp.id, 1, "x") == 3
    assert repo.get_round(exp.id, 1).state == RoundState.SEALED  # counting keeps the round's state
    repo.fail_round(exp.id, 1, "done")
    assert repo.note_round_sweep_failure(exp.id, 1, "y") == 0
    assert repo.note_round_sweep_failure(exp.id, 9, "none") == 0


def test_mark_applied_many_moves_each_accepted_update_once(connector):
    repo = connector.repo
    exp = running(repo, total_rounds=2)
    ids = [f"c-{i}" for i in range(20)]
    accept_all(repo, exp.id, ids)
    repo.seal_round(exp.id, 1, 20, NOW, 60)
    repo.acquire_lease(exp.id, 1, "w", NOW, 60)
    assert _publish(repo, exp, 1, "w", NOW + 2) is True
    assert repo.mark_applied(exp.id, 1, "c-3", NOW + 3) is True
    assert repo.mark_applied_many(exp.id, 1, [*ids, "nobody"], NOW + 4) == 19
    assert repo.mark_applied_many(exp.id, 1, ids, NOW + 5) == 0
    assert {u.status for u in repo.list_updates(exp.id, 1)} == {UpdateStatus.APPLIED}
