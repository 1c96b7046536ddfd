"""Contract: registration spread over use shards (issue 18) keeps `max_uses` exact under races
on every connector: never one registration more than allowed, none refused while uses remain,
no phantom client (every counted client exists, with its token)."""

from __future__ import annotations

import dataclasses

from fma.domain.auth import Role
from fma.domain.errors import Conflict, Forbidden
from fma.domain.experiment import new_round
from fma.domain.sharding import shard_count

from .contract_records import NOW, experiment, token
from .test_metadata_rounds import race


def _sharded(repo, expected_clients: int):
    exp = dataclasses.replace(experiment(), expected_clients=expected_clients, shards=shard_count(expected_clients))
    repo.create_experiment(exp)
    assert repo.activate(exp.id, [{"name": "w", "shape": [2], "dtype": "F32"}], "a" * 64, new_round(exp, 1, NOW))
    return exp


def _register(repo, exp_id: str, enroll_hash: str, i: int) -> tuple[str, str | None]:
    """As a client does: retry a REGISTRATION_CONFLICT; ("ok", token hash) or (refusal code, None)."""
    for _ in range(20):
        client = token(Role.CLIENT, experiment_id=exp_id)
        try:
            repo.register_client(exp_id, f"c-{i}", None, enroll_hash, client, NOW)
            return "ok", client.token_hash
        except Conflict as exc:
            if exc.code != "REGISTRATION_CONFLICT":
                return exc.code, None
        except Forbidden as exc:
            return exc.code, None
    return "gave up", None


def test_racing_registrations_admit_exactly_max_uses(connector):
    repo = connector.repo
    for trial, (max_uses, racers) in enumerate([(5, 12), (9, 12), (12, 12), (3, 12)]):
        exp = _sharded(repo, expected_clients=256)
        enroll = token(Role.ENROLLMENT, experiment_id=exp.id, max_uses=max_uses)
        repo.put_token(enroll)
        results = race(lambda i, e=exp.id, h=enroll.token_hash: _register(repo, e, h, i), racers)
        admitted = [h for code, h in results if code == "ok"]
        assert len(admitted) == max_uses, (trial, results)
        assert {code for code, _ in results} <= {"ok", "ENROLLMENT_EXHAUSTED"}
        assert repo.get_token(enroll.token_hash).uses == max_uses
        assert repo.get_experiment(exp.id).clients == max_uses
        registered = [i for i in range(racers) if repo.get_client_token_hash(exp.id, f"c-{i}") is not None]
        assert len(registered) == max_uses
        assert all(repo.get_token(h) is not None for h in admitted)


def test_every_use_is_spendable_one_by_one_across_shards(connector):
    """None refused while uses remain: 40 sequential registrations of a 40-use token over many
    shards all succeed (whatever shard each client hashes to), the 41st is exhausted."""
    repo = connector.repo
    exp = _sharded(repo, expected_clients=1000)
    enroll = token(Role.ENROLLMENT, experiment_id=exp.id, max_uses=40)
    repo.put_token(enroll)
    assert [_register(repo, exp.id, enroll.token_hash, i)[0] for i in range(40)] == ["ok"] * 40
    assert _register(repo, exp.id, enroll.token_hash, 99)[0] == "ENROLLMENT_EXHAUSTED"
    assert repo.get_experiment(exp.id).clients == 40
