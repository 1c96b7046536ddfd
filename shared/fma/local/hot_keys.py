"""The hot-key meter of the aws-emulation backend: DynamoDB item writes (and reads) per partition key.

DynamoDB serves at most 1,000 WCU / 3,000 RCU per second per partition, and a partition key
cannot be split: whatever a round writes on one key is the ceiling of the whole round. This
meter counts, inside moto (so every process that talks to the emulator is seen: local mode's
gateway workers, ingest, aggregation, the sweeper, or an in-process `mock_aws` test), every item
write per partition key of the base table and of each GSI:

- base table: one write per Put, Update, Delete or ConditionCheck item of a write that took
  effect (a transaction's ConditionCheck consumes write capacity on its item and conflicts with
  other transactions on it), counted on the item's `pk`; the items of a refused write (a failed
  condition, a cancelled or conflicting transaction) are counted apart under `refused`, since
  they consume capacity too but are not part of the access pattern;
- GSI: one write on the index's hash key that a successfully written item holds afterwards
  (an item that leaves an index is counted apart, as a removal, under `gsi_removals`).

Reads are counted per key too (GetItem and Query requests), for the capacity model. It is an
emulator instrument, enabled explicitly (`install()`), never part of what Lambda runs.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fma.local.moto_atomic import _LOCK

BASE = "table"
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_READS = ("get_item", "query")
_KIND = {"Put": "put", "Update": "update", "Delete": "delete", "ConditionCheck": "check"}
#: how key values are grouped into the patterns the report prints (ids and hashes elided).
_PATTERNS = (
    (re.compile(r"^EXP#[^#]+"), "EXP#{id}"),
    (re.compile(r"^TOKEN#[0-9a-f]{64}"), "TOKEN#{hash}"),
    (re.compile(r"^IDEM#[0-9a-f]{64}"), "IDEM#{hash}"),
    (re.compile(r"^OWNER#.+"), "OWNER#{owner}"),
)


def key_pattern(value: str) -> str:
    """The key with its ids elided (`EXP#3f..#S7` -> `EXP#{id}#S7`), for grouping and printing."""
    for regex, name in _PATTERNS:
        if regex.match(value):
            return regex.sub(name, value, count=1)
    return value


@dataclass
class Counts:
    """Counters keyed by (index, key value): index is "table" or a GSI name."""

    writes: collections.Counter = field(default_factory=collections.Counter)
    refused: collections.Counter = field(default_factory=collections.Counter)
    transactional: collections.Counter = field(default_factory=collections.Counter)
    gsi_removals: collections.Counter = field(default_factory=collections.Counter)
    reads: collections.Counter = field(default_factory=collections.Counter)
    operations: collections.Counter = field(default_factory=collections.Counter)

    def to_json(self) -> dict[str, Any]:
        return {name: [[i, k, n] for (i, k), n in sorted(getattr(self, name).items())]
                for name in ("writes", "refused", "transactional", "gsi_removals", "reads")} | {
            "operations": dict(self.operations)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        out = cls(operations=collections.Counter(data.get("operations", {})))
        for name in ("writes", "refused", "transactional", "gsi_removals", "reads"):
            getattr(out, name).update({(i, k): n for i, k, n in data.get(name, [])})
        return out

    def total_writes(self) -> int:
        return sum(self.writes.values())

    def hottest(self) -> tuple[str, str, int]:
        """(index, key, writes) of the most written key; ("", "", 0) when nothing was written."""
        if not self.writes:
            return "", "", 0
        (index, key), n = max(self.writes.items(), key=lambda kv: (kv[1], kv[0]))
        return index, key, n

    def top(self, limit: int = 10) -> list[tuple[str, str, int]]:
        ranked = sorted(self.writes.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [(i, k, n) for (i, k), n in ranked]

    def minus(self, earlier: Counts) -> Counts:
        """What was counted since `earlier` (a snapshot of the same meter)."""
        out = Counts()
        for name in ("writes", "refused", "transactional", "gsi_removals", "reads", "operations"):
            diff = getattr(self, name).copy()
            diff.subtract(getattr(earlier, name))
            getattr(out, name).update({k: v for k, v in diff.items() if v > 0})
        return out


class HotKeyMeter:
    """Thread-safe counters; `install()` makes moto's DynamoDB backend feed them."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.lock = threading.Lock()

    def snapshot(self) -> Counts:
        with self.lock:
            return Counts.from_json(self.counts.to_json())

    def reset(self) -> None:
        with self.lock:
            self.counts = Counts()

    def _note(self, writes: Iterable[tuple[str, str]], txn: bool, removals: Iterable[tuple[str, str]] = (),
              reads: Iterable[tuple[str, str]] = (), operation: str | None = None,
              refused: Iterable[tuple[str, str]] = ()) -> None:
        with self.lock:
            self.counts.refused.update(refused)
            for key in writes:
                self.counts.writes[key] += 1
                if txn:
                    self.counts.transactional[key] += 1
            self.counts.gsi_removals.update(removals)
            self.counts.reads.update(reads)
            if operation:
                self.counts.operations[operation] += 1


METER = HotKeyMeter()

#: callables given one dict per metered request (what the counters see, plus item keys and
#: sizes): the scale model's recorder (benchmarks/scale/record.py) turns them into profiles.
LISTENERS: list[Callable[[dict[str, Any]], None]] = []


def _emit(event: dict[str, Any]) -> None:
    for listener in list(LISTENERS):
        with contextlib.suppress(Exception):  # never let the instrument change an answer
            listener(event)


def _size(item: Any) -> int:
    """An item's size in bytes as DynamoDB bills it (attribute names + values); 0 when absent."""
    return int(item.size()) if item is not None else 0


def _text(value: Any) -> str | None:
    """The string of a DynamoDB value (moto's DynamoType or wire JSON)."""
    if value is None:
        return None
    inner = getattr(value, "value", None)
    if inner is None and isinstance(value, dict):
        inner = next(iter(value.values()), None)
    return str(inner) if inner is not None else None


def _item_key(table: Any, attrs: dict[str, Any]) -> tuple[Any, Any]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    hash_value = DynamoType(attrs[table.hash_key_attr])
    range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    return hash_value, range_value


def _index_keys(table: Any, item: Any) -> dict[str, str]:
    """GSI name -> the hash key value the item holds in that index (absent: not in it)."""
    if item is None:
        return {}
    out = {}
    for index in table.global_indexes:
        name = next(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
        value = _text(item.attrs.get(name))
        if value is not None:
            out[index.name] = value
    return out


def _targets(backend: Any, op: str, args: tuple, kwargs: dict) -> Iterator[tuple[Any, dict[str, Any], str]]:
    """(table, key attributes, kind) of every item the write call touches."""
    if op == "transact_write_items":
        for entry in kwargs.get("transact_items", args[0] if args else []):
            name, body = next(iter(entry.items()))
            table = backend.get_table(body["TableName"])
            yield table, body.get("Key") or body.get("Item"), _KIND[name]
        return
    table_name = kwargs.get("table_name", args[0] if args else None)
    table = backend.get_table(table_name)
    if op == "put_item":
        yield table, kwargs.get("item_attrs", args[1] if len(args) > 1 else None), "put"
    else:
        yield table, kwargs.get("key", args[1] if len(args) > 1 else None), op.removesuffix("_item")


_INSIDE = threading.local()  # moto's transaction calls its own put/update/delete: count those once


def _metered_write(original, op: str):
    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        if getattr(_INSIDE, "active", False):
            return original(self, *args, **kwargs)
        with _LOCK:
            _INSIDE.active = True
            try:
                return _count_write(original, op, self, args, kwargs)
            finally:
                _INSIDE.active = False

    wrapper._fma_metered = True  # type: ignore[attr-defined]
    return wrapper


def _count_write(original, op: str, self, args: tuple, kwargs: dict):
    try:
        targets = [(t, _item_key(t, attrs), kind) for t, attrs, kind in _targets(self, op, args, kwargs)]
    except Exception:  # a malformed request: moto answers it with its own error
        return original(self, *args, **kwargs)
    old_items = [t.get_item(*k) for t, k, _ in targets]
    before = [_index_keys(t, item) for (t, _, _), item in zip(targets, old_items, strict=True)]
    writes = [(BASE, _text(k[0]) or "") for _, k, _ in targets]
    try:
        result = original(self, *args, **kwargs)
    except Exception:
        METER._note((), False, operation=f"{op}:refused", refused=writes)
        if LISTENERS:
            _emit(_write_event(op, targets, old_items, [None] * len(targets), ok=False))
        raise
    gsi, removed, new_items = [], [], []
    for (table, key, kind), old in zip(targets, before, strict=True):
        new_item = table.get_item(*key)
        new_items.append(new_item)
        if kind == "check":
            continue
        new = _index_keys(table, new_item)
        gsi += [(index, value) for index, value in new.items()]
        removed += [(index, value) for index, value in old.items() if new.get(index) != value]
    METER._note(writes + gsi, op == "transact_write_items", removed, operation=op)
    if LISTENERS:
        _emit(_write_event(op, targets, old_items, new_items, ok=True))
    return result


def _write_event(op: str, targets: list, old_items: list, new_items: list, ok: bool) -> dict[str, Any]:
    """One write request for the listeners: every item (kind, keys, billed size: the larger of
    the item before and after) and, for a write that took effect, every GSI entry it wrote."""
    items = []
    for (table, key, kind), old, new in zip(targets, old_items, new_items, strict=True):
        size = max(_size(old), _size(new))
        items.append({"index": BASE, "pk": _text(key[0]) or "", "sk": _text(key[1]) or "", "kind": kind,
                      "bytes": size})
        if ok and kind != "check":
            items += [{"index": index, "pk": value, "sk": "", "kind": "gsi", "bytes": _size(new)}
                      for index, value in _index_keys(table, new).items()]
    return {"call": op, "txn": op == "transact_write_items", "ok": ok, "items": items}


def _metered_read(original, op: str):
    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if getattr(_INSIDE, "active", False):
            return result
        try:
            if op == "get_item":
                table = self.get_table(kwargs.get("table_name", args[0] if args else None))
                keys = kwargs.get("keys", args[1] if len(args) > 1 else {})
                METER._note((), False, reads=[(BASE, _text(keys.get(table.hash_key_attr)) or "")])
                found = [result] if result is not None else []
                index, pk = BASE, _text(keys.get(table.hash_key_attr)) or ""
                sk = _text(keys.get(table.range_key_attr)) if table.range_key_attr else ""
            else:
                index = kwargs.get("index_name") or BASE
                hash_value = _text(kwargs.get("hash_key_dict", args[1] if len(args) > 1 else None))
                METER._note((), False, reads=[(index, hash_value or "")])
                found, pk, sk = list(result[0]), hash_value or "", ""
            if LISTENERS:
                _emit({"call": op, "index": index, "pk": pk, "sk": sk or "",
                       "items": len(found), "bytes": sum(_size(i) for i in found)})
        except Exception:  # never let the instrument change an answer
            pass
        return result

    wrapper._fma_metered = True  # type: ignore[attr-defined]
    return wrapper


def install() -> HotKeyMeter:
    """Meter moto's DynamoDB backend (idempotent); returns the process-wide meter."""
    from moto.dynamodb.models import DynamoDBBackend

    from fma.local.moto_atomic import make_moto_dynamodb_atomic

    make_moto_dynamodb_atomic()
    for op in (*_WRITES, *_READS):
        original = getattr(DynamoDBBackend, op)
        if not getattr(original, "_fma_metered", False):
            setattr(DynamoDBBackend, op, (_metered_write if op in _WRITES else _metered_read)(original, op))
    return METER


def save(counts: Counts, path: Path) -> None:
    """Write the counts where a benchmark reads them (atomically: a reader never sees half)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(counts.to_json()))
    tmp.replace(path)


def load(path: Path) -> Counts:
    return Counts.from_json(json.loads(path.read_text()))


def _label(index: str, key: str) -> str:
    return f"`{key_pattern(key)}`" if index == BASE else f"GSI `{index}`: `{key_pattern(key)}`"


def table_lines(counts: Counts, accepted: int, limit: int = 5) -> list[str]:
    """The hottest keys as the markdown table of issue 18 (writes, share, per accepted update)."""
    total, per = max(counts.total_writes(), 1), max(accepted, 1)
    lines = ["| key | item writes | share of all writes | per accepted update |", "|---|---|---|---|"]
    for index, key, n in counts.top(limit):
        lines.append(f"| {_label(index, key)} | {n} | {n / total:.1%} | {n / per:.2f} |")
    lines.append(f"| (all keys: {len(counts.writes)}) | {counts.total_writes()} | 100% | "
                 f"{counts.total_writes() / per:.2f} |")
    return lines


def hottest_line(counts: Counts, accepted: int) -> str:
    """`HOTTEST_KEY share=<fraction of all writes> per_accept=<writes on it per accepted update>`."""
    index, key, n = counts.hottest()
    share = n / counts.total_writes() if counts.total_writes() else 0.0
    return (f"HOTTEST_KEY share={share:.4f} per_accept={n / max(accepted, 1):.4f} "
            f"key={_label(index, key).replace(' ', '')} writes={n} accepted={accepted}")


class MeterFile:
    """Installs the meter and keeps its counts in `path` (every second and at `stop()`), so a
    benchmark can read what a local-mode process measured."""

    def __init__(self, path: Path, every: float = 1.0):
        self.path, self.every = path, every
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fma-hot-keys", daemon=True)

    def start(self) -> MeterFile:
        install().reset()
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.done.wait(self.every):
            save(METER.snapshot(), self.path)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        save(METER.snapshot(), self.path)
