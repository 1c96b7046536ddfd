"""Access-pattern profiles: a recording's operation instances folded per operation class.

A key's raw value becomes a *class*: the experiment id `{exp}`, client ids `{client}`, the
enrollment token's hash `{enroll}`, any other token hash `{hash}` (a client's own token, an
idempotency key), round numbers `{n}`, and shard suffixes (`#P017`, `#N003`, `#U021`,
`DUE_UPLOAD#7`) `{k}`. The simulator gives each class its multiplicity: one key for the
experiment (or the service), one per client (`{client}`, `{hash}`: never contended), or one of
the class's shards (`{k}`).

An operation's profile is its most frequent instance (its *signature*: reads per key class with
their read units, write requests with their items, S3 requests per prefix, API/Lambda/SQS
calls). The seal is what the sealing accept (the last ingest) did beyond a typical accept.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

OPERATIONS = ("register", "download", "upload", "ingest", "poll", "publish")
_SHARD = (re.compile(r"#([PNU])\d+$"), r"#\1{k}")
_DUE = (re.compile(r"^(DUE_UPLOAD)#\d+$"), r"\1#{k}")
_HEX = re.compile(r"[0-9a-f]{64}")
_NUM = re.compile(r"(?<![0-9a-zA-Z{])\d{4,}(?![0-9a-zA-Z}])")


class Classifier:
    def __init__(self, exp_id: str, client_ids: list[str], enroll_hash: str) -> None:
        self.exp_id, self.enroll_hash = exp_id, enroll_hash
        self.clients = re.compile("|".join(sorted(map(re.escape, client_ids), key=len, reverse=True)) or "(?!)")

    def __call__(self, value: str) -> str:
        out = value.replace(self.exp_id, "{exp}") if self.exp_id else value
        if self.enroll_hash:
            out = out.replace(self.enroll_hash, "{enroll}")
        out = self.clients.sub("{client}", out)
        out = _HEX.sub("{hash}", out)
        for regex, repl in (_SHARD, _DUE):
            out = regex.sub(repl, out)
        return _NUM.sub("{n}", out)


def scope(pk: str) -> str:
    """`each` (one key per client or request), `shard` (one of a class's shards), `one`."""
    if "{client}" in pk or "{hash}" in pk:
        return "each"
    return "shard" if "{k}" in pk else "one"


def read_units(nbytes: int) -> int:
    """Strongly consistent read units (4 KB each, at least one; the model reads consistently)."""
    return max(1, math.ceil(nbytes / 4096))


def write_units(nbytes: int) -> int:
    return max(1, math.ceil(nbytes / 1024))


def _prefix(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/" if "/" in key else ""


def signature(instance: dict[str, Any], cls: Classifier) -> collections.Counter:
    """The instance's requests as a multiset of hashable entries (ids elided)."""
    out: collections.Counter = collections.Counter()
    for ev in instance["ddb"]:
        if "items" in ev and isinstance(ev["items"], list):
            items = tuple((i["index"], cls(i["pk"]), cls(i["sk"]), i["kind"], write_units(i["bytes"]))
                          for i in ev["items"])
            out[("write", ev["call"], bool(ev["txn"]), bool(ev["ok"]), items)] += 1
        else:
            out[("read", ev["call"], ev["index"], cls(ev["pk"]), cls(ev["sk"]), read_units(ev["bytes"]))] += 1
    for ev in instance["s3"]:
        out[("s3", ev["call"], cls(_prefix(ev["key"])))] += 1
    for name, n in sorted(instance["calls"].items()):
        out[("calls", name)] += n
    return out


def _frozen(counter: collections.Counter) -> str:
    return json.dumps(sorted([list(k), n] for k, n in counter.items()), default=list)


def _entries(counter: collections.Counter) -> list[dict[str, Any]]:
    out = []
    for key, n in sorted(counter.items(), key=lambda kv: json.dumps(kv[0], default=list)):
        if key[0] == "read":
            _, call, index, pk, sk, rcu = key
            out.append({"type": "read", "call": call, "index": index, "pk": pk, "sk": sk, "rcu": rcu, "count": n})
        elif key[0] == "write":
            _, call, txn, ok, items = key
            out.append({"type": "write", "call": call, "txn": txn, "ok": ok, "count": n, "items": [
                {"index": i, "pk": pk, "sk": sk, "kind": kind, "wcu": wcu} for i, pk, sk, kind, wcu in items]})
        elif key[0] == "s3":
            out.append({"type": "s3", "call": key[1], "prefix": key[2], "count": n})
        else:
            out.append({"type": "calls", "name": key[1], "count": n})
    return out


def build(recording: dict[str, Any]) -> dict[str, Any]:
    """Per operation class: its typical instance (and how many instances matched it); the seal."""
    cls = Classifier(recording["experiment_id"], recording["client_ids"], recording.get("enroll_hash", ""))
    by_op: dict[str, list[collections.Counter]] = collections.defaultdict(list)
    for instance in recording["instances"]:
        by_op[instance["op"]].append(signature(instance, cls))
    ops: dict[str, Any] = {}
    for op in OPERATIONS:
        sigs = by_op.get(op, [])
        if not sigs:
            continue
        rest = sigs[:-1] if op == "ingest" and len(sigs) > 1 else sigs
        frozen = collections.Counter(_frozen(s) for s in rest)
        mode_text, matched = frozen.most_common(1)[0]
        mode = next(s for s in rest if _frozen(s) == mode_text)
        ops[op] = {"instances": len(rest), "matching": matched, "requests": _entries(mode)}
        if op == "ingest":
            ops["seal"] = {"instances": 1, "matching": 1, "requests": _entries(sigs[-1] - mode)}
    return ops


def key_classes(profile_ops: dict[str, Any]) -> dict[str, list[str]]:
    """Per operation: the sorted key classes (index:pk) its DynamoDB requests touch, and the S3
    prefixes (s3:CALL:prefix) it reads or writes."""
    out = {}
    for op, body in profile_ops.items():
        keys = set()
        for req in body["requests"]:
            if req["type"] == "read":
                keys.add(f"{req['index']}:{req['pk']}")
            elif req["type"] == "write":
                keys.update(f"{i['index']}:{i['pk']}" for i in req["items"])
            elif req["type"] == "s3":
                keys.add(f"s3:{req['call']}:{req['prefix']}")
        out[op] = sorted(keys)
    return out


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def save(profile: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile, indent=1, sort_keys=True) + "\n")
