"""Records as JSON rows, keyed like the aws connector's items: the shared vocabulary of the
embedded connectors (memory, sqlite_fs), which keep the same rows in dictionaries or in SQLite."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from fma.domain import strict_json
from fma.domain.aggregation_config import AggregationSettings
from fma.domain.auth import Role
from fma.domain.errors import InvalidInput
from fma.domain.experiment import Experiment, RoundPolicy
from fma.domain.records import EvaluationRecord, RoundRecord, TokenRecord, UpdateRecord
from fma.domain.states import ExperimentStatus, RoundState, UpdateStatus
from fma.domain.update_limits import UpdateLimits

Row = dict[str, Any]
Key = tuple[str | int, ...]

#: table -> the row fields that form its primary key, in sort order.
TABLES: dict[str, tuple[str, ...]] = {
    "tokens": ("token_hash",),
    "experiments": ("id",),
    "clients": ("experiment_id", "client_id"),
    "rounds": ("experiment_id", "round"),
    "updates": ("experiment_id", "round", "client_id"),
    "evaluations": ("experiment_id", "round", "client_id"),
    "refusals": ("experiment_id", "round", "client_id"),
    "idempotency": ("record_id",),
    # async mode: which updates joined the buffer of a version (records_buffers.py)
    "buffers": ("experiment_id", "version", "round", "client_id"),
    "registry_names": ("name",),
    "registry_versions": ("name", "sort_key"),
    "links": ("experiment_id", "sk"),
}
#: tables with a sparse `due` column (the sweeper's index) and the experiments' listing column.
DUE_TABLES = ("rounds", "updates")


def key_of(table: str, row: Row) -> Key:
    return tuple(row[f] for f in TABLES[table])


def due_key(when: float, experiment_id: str, n: int) -> str:
    """Same format as the aws connector's due index: sorts by time, then experiment and round."""
    return f"{when:017.3f}#{experiment_id}#{n:08d}"


def upload_due_key(when: float, experiment_id: str, n: int, client_id: str) -> str:
    return f"{due_key(when, experiment_id, n)}#{client_id}"


def due_until(now: float) -> str:
    return f"{now:017.3f}~"


def token_row(rec: TokenRecord) -> Row:
    return dataclasses.asdict(rec) | {"role": str(rec.role)}


def to_token(row: Row) -> TokenRecord:
    return TokenRecord(**(row | {"role": Role(row["role"])}))


def experiment_row(exp: Experiment) -> Row:
    row = dataclasses.asdict(exp)
    row.update(policy=exp.policy.to_json(), status=str(exp.status), list_key=f"{exp.created_at}#{exp.id}")
    return row


EXPERIMENT_FIELDS = frozenset(f.name for f in dataclasses.fields(Experiment))


def to_experiment(row: Row) -> Experiment:
    data = {k: v for k, v in row.items() if k in EXPERIMENT_FIELDS}
    data.update(policy=RoundPolicy(**row["policy"]), status=ExperimentStatus(row["status"]),
                update_limits=UpdateLimits.from_json(row.get("update_limits")),
                aggregation=AggregationSettings.from_json(row.get("aggregation")))
    return Experiment(**data)


def round_row(rec: RoundRecord, due: str | None) -> Row:
    return dataclasses.asdict(rec) | {"state": str(rec.state), "due": due}


ROUND_FIELDS = frozenset(f.name for f in dataclasses.fields(RoundRecord))
UPDATE_FIELDS = frozenset(f.name for f in dataclasses.fields(UpdateRecord))


def to_round(row: Row) -> RoundRecord:
    """The record of a row (a row also keeps its `due` key and counters such as `sweep_errors`)."""
    data = {k: v for k, v in row.items() if k in ROUND_FIELDS}
    return RoundRecord(**(data | {"state": RoundState(row["state"])}))


def update_row(rec: UpdateRecord, due: str | None = None) -> Row:
    return dataclasses.asdict(rec) | {"status": str(rec.status), "due": due}


def to_update(row: Row) -> UpdateRecord:
    data = {k: v for k, v in row.items() if k in UPDATE_FIELDS}
    return UpdateRecord(**(data | {"status": UpdateStatus(row["status"])}))


def evaluation_row(experiment_id: str, rec: EvaluationRecord, now: float) -> Row:
    return dataclasses.asdict(rec) | {"experiment_id": experiment_id, "created_at": now}


def to_evaluation(row: Row) -> EvaluationRecord:
    return EvaluationRecord(row["round"], row["client_id"], int(row["num_examples"]), row["metrics"] or {})


MAX_CURSOR_CHARS = 4096


def encode_cursor(value: str | int | None, scope: str) -> str | None:
    """The last key of a page, bound to the query (`scope`) that wrote it."""
    if value is None:
        return None
    return base64.urlsafe_b64encode(json.dumps([scope, value]).encode()).decode()


def decode_cursor(cursor: str | None, kind: type, scope: str) -> Any:
    """The last key of the previous page. Anything but a cursor this query could have written
    (tampered, another query's, unknown shape, oversized) is InvalidInput INVALID_CURSOR, never a 500."""
    if not cursor:
        return None
    value: Any = None
    try:
        if len(cursor) <= MAX_CURSOR_CHARS:
            value = strict_json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, TypeError):
        value = None
    if not (isinstance(value, list) and len(value) == 2 and value[0] == scope and type(value[1]) is kind
            and (kind is not str or 0 < len(value[1]) <= 1024)):
        raise InvalidInput("cursor is not valid", code="INVALID_CURSOR", details={"field": "cursor"})
    return value[1]
