"""Records the contract tests build: an experiment with its first round, tokens, updates."""

from __future__ import annotations

import threading
import uuid

from fma.domain.auth import Role
from fma.domain.experiment import Experiment, RoundPolicy, new_round
from fma.domain.records import TokenRecord, UpdateRecord
from fma.domain.states import UpdateStatus

NOW = 1_800_000_000.0


def experiment(owner: str = "dev-1", created_at: str = "2027-01-01T00:00:00Z", **policy) -> Experiment:
    return Experiment(id=uuid.uuid4().hex[:16], name="exp", owner=owner, strategy_name="fedavg",
                      strategy_params={}, policy=RoundPolicy(**({"min_updates": 2, "total_rounds": 3} | policy)),
                      client_config={"lr": 0.1}, max_update_bytes=1 << 20, created_at=created_at,
                      updated_at=created_at)


def running(repo, **policy) -> Experiment:
    """An experiment with its initial model ingested: RUNNING, round 1 OPEN."""
    exp = experiment(**policy)
    repo.create_experiment(exp)
    assert repo.activate(exp.id, [{"name": "w", "shape": [2], "dtype": "F32"}], "a" * 64, new_round(exp, 1, NOW))
    return repo.get_experiment(exp.id)


def token(role: Role = Role.DEVELOPER, **kw) -> TokenRecord:
    fields = {"token_hash": uuid.uuid4().hex * 2, "role": role, "principal_id": f"{role}-{uuid.uuid4().hex[:8]}",
              "experiment_id": None, "expires_at": None, "max_uses": None, "uses": 0, "revoked": False}
    return TokenRecord(**(fields | kw))


def update(exp_id: str, client_id: str, n: int = 1, examples: int = 5, version_id: str | None = None) -> UpdateRecord:
    return UpdateRecord(exp_id, n, client_id, UpdateStatus.UPLOADING, num_examples=examples,
                        metrics={"loss": 0.5}, sha256="b" * 64, size=100, updated_at=NOW + 1, version_id=version_id)


def accept_all(repo, exp_id: str, clients: list[str], n: int = 1) -> None:
    for c in clients:
        repo.begin_upload(exp_id, n, c, NOW)
        assert repo.accept_update(update(exp_id, c, n)) == "accepted"


def refused_create() -> tuple[type[BaseException], ...]:
    """What a refused conditional create raises: Conflict (embedded), PutError (pynamodb)."""
    from pynamodb.exceptions import PutError

    from fma.domain.errors import Conflict

    return Conflict, PutError


def missing_object() -> tuple[type[BaseException], ...]:
    """What reading a missing object raises: LookupError (embedded), ClientError (boto3)."""
    from botocore.exceptions import ClientError

    return LookupError, ClientError


def race(fn, count: int = 8) -> list:
    """Run `fn(i)` on `count` threads released together; their results in thread order."""
    barrier, results = threading.Barrier(count), [None] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
