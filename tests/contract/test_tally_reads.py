"""aws connector: enrolled-clients and token-use tallies are spread over all S shards and summed
only where the count is read (issue 18's last gap): an experiment read for a poll, a download or
an ingest, and a registration whose shard has budget left, read no tally shard."""

from __future__ import annotations

import pytest

from fma.domain.auth import Role
from fma.domain.sharding import shard_of
from fma.domain.states import ExperimentStatus

from .contract_records import NOW, token
from .test_enrollment_shards import _register, _sharded


@pytest.fixture
def aws(connector):
    if connector.name != "aws":
        pytest.skip("the tally shards are the aws connector's layout")
    return connector


@pytest.fixture
def tally_reads(monkeypatch):
    from fma.adapters import dynamo_shards

    calls: list[int] = []
    original = dynamo_shards.tally

    def counting(items):
        calls.append(len(items))
        return original(items)

    monkeypatch.setattr(dynamo_shards, "tally", counting)
    return calls


def test_an_experiment_read_sums_the_enrolled_shards_only_when_its_count_is_read(aws, tally_reads):
    repo = aws.repo
    exp = _sharded(repo, expected_clients=1000)  # S = 125
    enroll = token(Role.ENROLLMENT, experiment_id=exp.id, max_uses=None)
    repo.put_token(enroll)
    assert [_register(repo, exp.id, enroll.token_hash, i)[0] for i in range(6)] == ["ok"] * 6
    tally_reads.clear()
    read = repo.get_experiment(exp.id)
    assert (read.status, read.current_round, read.shards) == (ExperimentStatus.RUNNING, 1, 125)
    assert tally_reads == []
    assert read.clients == 6
    assert tally_reads == [125]  # all S shards, in one batch read
    assert read.to_public()["clients"] == 6 and tally_reads == [125]  # read once, then kept


def test_registrations_spread_over_all_shards_and_do_not_count_the_uses(aws, tally_reads):
    from fma.adapters.dynamo_models import TallyShardItem
    from fma.adapters.dynamo_shards import enrolled_item, tallies_of, uses_item

    repo = aws.repo
    exp = _sharded(repo, expected_clients=1000)
    assert tallies_of(exp.id) == 125
    enroll = token(Role.ENROLLMENT, experiment_id=exp.id, max_uses=1000)
    repo.put_token(enroll)
    tally_reads.clear()
    for i in range(40):
        repo.register_client(exp.id, f"c-{i}", None, enroll.token_hash, token(Role.CLIENT, experiment_id=exp.id), NOW)
    assert tally_reads == []  # each registration's shard (budget 8) had room: no count read
    shards = {shard_of(f"c-{i}", 125) for i in range(40)}
    assert max(shards) >= 32  # beyond the old cap of 32
    counted = {k for k in range(125) if _count(TallyShardItem, enrolled_item(exp.id, k))}
    assert counted == shards
    assert sum(_count(TallyShardItem, uses_item(enroll.token_hash, j)) for j in range(125)) == 40
    assert repo.get_token(enroll.token_hash).uses == 40


def test_an_experiment_created_with_32_tally_shards_keeps_them(aws):
    """Tallies of experiments made before they spanned all S shards (no `tally_shards` on META)
    stay on min(S, 32): their use budgets were split over 32 and spent shards keep their counts."""
    from fma.adapters import dynamo_shards
    from fma.adapters.dynamo_models import ExperimentItem, exp_pk

    repo = aws.repo
    exp = _sharded(repo, expected_clients=1000)
    ExperimentItem(exp_pk(exp.id), "META").update(actions=[ExperimentItem.tally_shards.remove()])
    dynamo_shards._SHARDS.pop(exp.id, None)
    assert (dynamo_shards.shards_of(exp.id), dynamo_shards.tallies_of(exp.id)) == (125, 32)
    enroll = token(Role.ENROLLMENT, experiment_id=exp.id, max_uses=33)
    repo.put_token(enroll)
    results = [_register(repo, exp.id, enroll.token_hash, i)[0] for i in range(34)]
    assert results == ["ok"] * 33 + ["ENROLLMENT_EXHAUSTED"]
    assert repo.get_experiment(exp.id).clients == 33


def _count(model, item) -> int:
    from pynamodb.exceptions import DoesNotExist

    try:
        return int(model.get(item.pk, item.sk, consistent_read=True).count or 0)
    except DoesNotExist:
        return 0
