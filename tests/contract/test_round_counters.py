"""Contract: a round counted over shards (issue 13 item 1) keeps the exactly-once semantics on
every connector: racing accepts and sealers agree on one final count, nothing counts after the
seal, and updates come back in client-id order whatever partition they were written to."""

from __future__ import annotations

import dataclasses

from fma.domain.experiment import new_round
from fma.domain.sharding import shard_count
from fma.domain.states import RoundState, UpdateStatus

from .contract_records import NOW, experiment, update
from .test_metadata_rounds import race


def sharded(repo, expected_clients: int = 1000, **policy):
    """A RUNNING experiment spread over shard_count(expected_clients) shards."""
    exp = dataclasses.replace(experiment(**policy), expected_clients=expected_clients,
                              shards=shard_count(expected_clients))
    repo.create_experiment(exp)
    assert repo.activate(exp.id, [{"name": "w", "shape": [2], "dtype": "F32"}], "a" * 64, new_round(exp, 1, NOW))
    return repo.get_experiment(exp.id)


def test_the_shard_count_is_kept_with_the_experiment(connector):
    exp = sharded(connector.repo, expected_clients=1000)
    assert (exp.expected_clients, exp.shards) == (1000, shard_count(1000)) and exp.shards > 1
    assert exp.to_public()["shards"] == exp.shards


def test_updates_of_every_shard_list_in_client_id_order_and_count(connector):
    repo = connector.repo
    exp = sharded(repo, expected_clients=200)
    clients = [f"c-{i:03d}" for i in range(40)]
    for c in reversed(clients):
        repo.begin_upload(exp.id, 1, c, NOW)
        assert repo.accept_update(update(exp.id, c)) == "accepted"
    assert [u.client_id for u in repo.list_updates(exp.id, 1)] == clients
    assert repo.get_round(exp.id, 1).accepted == 40


def test_racing_accepts_and_sealers_agree_on_one_final_count(connector):
    """Given 10 clients racing to be accepted while each also tries to seal at a quota of 4,
    when the dust settles, then exactly one sealer won, the sealed count equals the accepts that
    succeeded (every later one heard "closed"), and that many updates are ACCEPTED."""
    repo = connector.repo
    for _trial in range(4):
        exp = sharded(repo, expected_clients=64, min_updates=4)
        for i in range(10):
            repo.begin_upload(exp.id, 1, f"c-{i}", NOW)

        def client(i: int, exp_id: str = exp.id) -> tuple[str, bool]:
            result = repo.accept_update(update(exp_id, f"c-{i}"))
            return result, repo.seal_round(exp_id, 1, 4, NOW, 60.0)

        results = race(client, 10)
        rnd = repo.get_round(exp.id, 1)
        accepted = sum(r == "accepted" for r, _ in results)
        assert sum(won for _, won in results) == 1
        assert rnd.state == RoundState.SEALED and rnd.accepted == accepted >= 4
        assert {r for r, _ in results} <= {"accepted", "closed"}
        statuses = [u.status for u in repo.list_updates(exp.id, 1)]
        assert statuses.count(UpdateStatus.ACCEPTED) == accepted
        assert repo.accept_update(update(exp.id, "c-late")) == "closed"
        assert repo.get_round(exp.id, 1).accepted == accepted


def test_a_seal_below_the_quota_changes_nothing(connector):
    repo = connector.repo
    exp = sharded(repo, expected_clients=64, min_updates=3)
    for c in ("a", "b"):
        repo.begin_upload(exp.id, 1, c, NOW)
        assert repo.accept_update(update(exp.id, c)) == "accepted"
    assert not repo.seal_round(exp.id, 1, 3, NOW, 60.0)
    repo.begin_upload(exp.id, 1, "c", NOW)
    assert repo.accept_update(update(exp.id, "c")) == "accepted"
    assert repo.seal_round(exp.id, 1, 3, NOW, 60.0)
    assert repo.get_round(exp.id, 1).accepted == 3


def test_a_forced_seal_makes_the_count_final(connector):
    repo = connector.repo
    exp = sharded(repo, expected_clients=64)
    repo.begin_upload(exp.id, 1, "a", NOW)
    assert repo.accept_update(update(exp.id, "a")) == "accepted"
    assert repo.force_seal(exp.id, 1, NOW, 60.0)
    assert repo.accept_update(update(exp.id, "b")) == "closed"
    assert repo.get_round(exp.id, 1).accepted == 1


def test_accepted_only_lists_the_accepted_and_applied_updates_of_every_shard(connector):
    """What aggregation reads: only ACCEPTED and APPLIED updates, from whichever partition, in
    client-id order; rejected, in-flight and late ones stay in the full listing only."""
    repo = connector.repo
    exp = sharded(repo, expected_clients=200, min_updates=20)
    clients = [f"c-{i:03d}" for i in range(36)]
    for c in clients:
        repo.begin_upload(exp.id, 1, c, NOW)
    accepted, rejected = clients[:20], clients[20:26]
    for c in accepted:
        assert repo.accept_update(update(exp.id, c)) == "accepted"
    for c in rejected:
        assert repo.reject_update(dataclasses.replace(update(exp.id, c), reason="BAD_UPDATE: test"))
    assert repo.seal_round(exp.id, 1, 20, NOW, 60.0)
    assert repo.accept_update(update(exp.id, clients[26])) == "closed"
    repo.mark_late(update(exp.id, clients[26]))
    for c in accepted[:5]:
        assert repo.mark_applied(exp.id, 1, c, NOW)
    counted = repo.list_updates(exp.id, 1, accepted_only=True)
    assert [u.client_id for u in counted] == accepted
    assert {u.status for u in counted} == {UpdateStatus.ACCEPTED, UpdateStatus.APPLIED}
    assert [u.client_id for u in repo.list_updates(exp.id, 1)] == clients
    assert repo.list_updates(exp.id, 2, accepted_only=True) == []


def test_async_buffers_keep_their_exact_count_on_a_sharded_experiment(connector):
    """A buffer counts on its round (its capacity is exact) while its updates live in the
    clients' partitions: listed, read back and counted once."""
    repo = connector.repo
    exp = sharded(repo, expected_clients=200, mode="async", buffer_size=3, max_staleness=2, total_rounds=2)
    clients = [f"c-{i}" for i in range(5)]
    for c in clients:
        repo.begin_upload(exp.id, 1, c, NOW)
    results = [repo.accept_buffered(update(exp.id, c), 1, 3) for c in clients]
    assert results == ["accepted"] * 3 + ["full"] * 2
    assert repo.get_round(exp.id, 1).accepted == 3
    assert [u.client_id for u in repo.list_buffer(exp.id, 1)] == clients[:3]
    assert [(repo.get_update(exp.id, 1, c).status, repo.get_update(exp.id, 1, c).applied_in)
            for c in clients] == [(UpdateStatus.ACCEPTED, 1)] * 3 + [(UpdateStatus.UPLOADING, None)] * 2
    assert repo.seal_buffer(exp.id, 1, 3, NOW, 60.0, new_round(exp, 2, NOW))
    assert repo.get_round(exp.id, 1).accepted == 3 and repo.get_round(exp.id, 1).state == RoundState.SEALED
