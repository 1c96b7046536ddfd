"""`fma verify <experiment-id>`: check an experiment's history end to end.

Walks the hash chain from the genesis record (initial model + settings, and the parent round of a
fork) through every published round's manifest, checks the sha256 and size of every object a
manifest names (models, pinned update versions), the digests the table recorded at publish, and
the registry versions that point into this history; `--rerun N` / `--rerun-all` re-run rounds'
aggregation from their manifests with the same engine and compare the bytes. Every mismatch is
one line of the report; the exit status is 1 if there is any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fma.services.deps import manifest_key, model_key
from fma.services.history import canonical, genesis_record, sha256_hex
from fma.verify_sources import Source


@dataclass
class Report:
    experiment_id: str
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def ok(self, message: str) -> None:
        self.checked.append(message)

    def render(self) -> str:
        head = (f"FAIL: experiment {self.experiment_id}: {len(self.problems)} problem(s)" if self.problems
                else f"OK: experiment {self.experiment_id}: history verified")
        return "\n".join([head, *(f"  x {p}" for p in self.problems), *(f"  ok {c}" for c in self.checked)])


@dataclass
class _Walk:
    """What the previous link of the chain left for the next one."""

    model_sha256: str | None
    manifest: bytes | None


def verify(source: Source, experiment_id: str, rerun: set[int] | None = None, rerun_all: bool = False) -> Report:
    report = Report(experiment_id)
    exp = source.experiment()
    rounds = sorted((r for r in source.rounds() if r["state"] == "PUBLISHED"), key=lambda r: r["round"])
    pinned = exp.get("initial_version_id")  # the version validated at activation (later writes are not it)
    initial = source.read(model_key(experiment_id, 0), pinned if isinstance(pinned, str) else None)
    if initial is None:
        report.fail(f"initial model {model_key(experiment_id, 0)} is missing")
    elif sha256_hex(initial) != exp.get("initial_sha256"):
        report.fail(f"initial model: sha256 {sha256_hex(initial)} differs from the recorded "
                    f"{exp.get('initial_sha256')}")
    walk = _Walk(exp.get("initial_sha256"), None)
    manifests: dict[int, str] = {}
    for r in rounds:
        walk = _round(source, report, exp, r, walk, initial)
        if walk.manifest is not None:
            manifests[r["round"]] = sha256_hex(walk.manifest)
            if rerun_all or r["round"] in (rerun or set()):
                _rerun(source, report, experiment_id, r["round"], json.loads(walk.manifest))
    for n in sorted((rerun or set()) - {r["round"] for r in rounds}):
        report.fail(f"--rerun {n}: round {n} is not published")
    _registry(source, report, exp, {r["round"]: r for r in rounds}, manifests)
    return report


def _round(source: Source, report: Report, exp: dict, r: dict, prev: _Walk, initial: bytes | None) -> _Walk:
    n, key = r["round"], manifest_key(exp["id"], r["round"])
    raw = source.read(key)
    if raw is None:
        report.fail(f"round {n}: manifest {key} is missing")
        return _Walk(r.get("model_sha256"), None)
    digest = sha256_hex(raw)
    if r.get("manifest_sha256") and digest != r["manifest_sha256"]:
        report.fail(f"round {n}: manifest sha256 {digest} differs from the {r['manifest_sha256']} recorded "
                    f"when the round was published (the manifest was edited or replaced)")
    try:
        manifest = json.loads(raw)
        output, recorded_prev = manifest["output"], manifest.get("previous_manifest_sha256")
    except (ValueError, KeyError, TypeError):
        report.fail(f"round {n}: manifest {key} is not a valid manifest")
        return _Walk(r.get("model_sha256"), None)
    expected = _expected_previous(report, exp, n, manifest, prev, initial)
    if n == 1:
        _check_parent(source, report, exp, manifest)
    if expected is not None and recorded_prev != expected:
        report.fail(f"round {n}: chain broken: previous_manifest_sha256 is {recorded_prev}, "
                    f"but the {'genesis record' if n == 1 else f'manifest of round {n - 1}'} hashes to {expected}")
    if manifest.get("global_model", {}).get("sha256") != prev.model_sha256:
        report.fail(f"round {n}: global model sha256 {manifest.get('global_model', {}).get('sha256')} is not "
                    f"the previous version's {prev.model_sha256}")
    if output.get("sha256") != r.get("model_sha256"):
        report.fail(f"round {n}: manifest output sha256 {output.get('sha256')} differs from the published "
                    f"{r.get('model_sha256')}")
    _object(source, report, f"round {n}: model", output.get("key", model_key(exp["id"], n)), None,
            output.get("sha256"), output.get("size"))
    _inputs(source, report, n, manifest)
    report.ok(f"round {n}: manifest {digest[:12]}…, model {str(output.get('sha256'))[:12]}…")
    return _Walk(output.get("sha256"), raw)


def _expected_previous(report: Report, exp: dict, n: int, manifest: dict, prev: _Walk,
                       initial: bytes | None) -> str | None:
    """What round n's previous_manifest_sha256 must be; None when its predecessor is unreadable."""
    if n > 1:
        return sha256_hex(prev.manifest) if prev.manifest is not None else None
    stored = manifest.get("genesis")
    stored_parent = stored.get("parent") if isinstance(stored, dict) else None
    parent = _parent_record(exp, stored_parent if isinstance(stored_parent, dict) else {})
    record = genesis_record(exp, exp.get("initial_sha256") or "", len(initial) if initial is not None else -1,
                            parent)
    if stored != record:
        differing = sorted(k for k in record if not isinstance(stored, dict) or stored.get(k) != record[k])
        report.fail(f"round 1: genesis record differs from the experiment's initial model and settings in "
                    f"{', '.join(differing) or 'its form'}")
    return sha256_hex(canonical(record))


def _parent_record(exp: dict, stored: dict) -> dict | None:
    """The fork's parent as the genesis must name it; its manifest digest is the one recorded at
    fork time (checked against the parent's manifest by `_check_parent`)."""
    parent = exp.get("parent")
    if not parent:
        return None
    return {"experiment_id": parent["experiment_id"], "round": parent["round"],
            "model_sha256": exp.get("initial_sha256"), "manifest_sha256": stored.get("manifest_sha256")}


def _check_parent(source: Source, report: Report, exp: dict, manifest: dict) -> None:
    parent = exp.get("parent")
    if not parent or parent["round"] == 0:
        return
    recorded = ((manifest.get("genesis") or {}).get("parent") or {}).get("manifest_sha256")
    raw = source.read(manifest_key(parent["experiment_id"], parent["round"]))
    if raw is None:
        report.fail(f"parent: manifest of round {parent['round']} of {parent['experiment_id']} cannot be read")
    elif sha256_hex(raw) != recorded:
        report.fail(f"parent: manifest of round {parent['round']} of {parent['experiment_id']} hashes to "
                    f"{sha256_hex(raw)}, the fork recorded {recorded}")


def _inputs(source: Source, report: Report, n: int, manifest: dict) -> None:
    def key(entry: dict) -> tuple:  # async versions may hold one client's updates of two rounds
        return (entry.get("client_id"), entry.get("round"))

    declared = {key(i): i for i in manifest.get("inputs", [])}
    objects = manifest.get("input_objects", [])
    if sorted(declared, key=str) != sorted((key(o) for o in objects), key=str):
        report.fail(f"round {n}: inputs and input_objects name different clients")
    for obj in objects:
        client = obj.get("client_id")
        _object(source, report, f"round {n}: input of {client}", obj.get("key"), obj.get("version_id"),
                declared.get(key(obj), {}).get("sha256"), obj.get("size"))


def _object(source: Source, report: Report, what: str, key: str | None, version_id: str | None,
            sha256: str | None, size: int | None) -> bytes | None:
    data = source.read(key, version_id) if key else None
    if data is None:
        report.fail(f"{what}: {key}{f' (version {version_id})' if version_id else ''} is missing")
        return None
    if sha256_hex(data) != sha256:
        report.fail(f"{what}: {key} has sha256 {sha256_hex(data)}, the manifest records {sha256}")
    elif size is not None and len(data) != size:
        report.fail(f"{what}: {key} has {len(data)} bytes, the manifest records {size}")
    return data


def _rerun(source: Source, report: Report, experiment_id: str, n: int, manifest: dict) -> None:
    from fma.verify_rerun import rerun_round

    try:
        got = rerun_round(source, experiment_id, n, manifest)
    except Exception as exc:  # the report names it; verify never stops half way
        report.fail(f"round {n}: re-run failed: {type(exc).__name__}: {str(exc)[:300]}")
        return
    want = manifest["output"]["sha256"]
    if got != want:
        report.fail(f"round {n}: re-run of the aggregation gives sha256 {got}, the manifest records {want}")
    else:
        report.ok(f"round {n}: re-run gives the same bytes ({got[:12]}…)")


def _registry(source: Source, report: Report, exp: dict, rounds: dict[int, dict],
              manifests: dict[int, str]) -> None:
    for link in exp.get("registry") or []:
        label = f"registry {link['name']} {link['version']}"
        v = source.registry_version(link["name"], link["version"])
        if v is None:
            report.fail(f"{label}: not found")
            continue
        n = v["round"]
        if n not in rounds:
            report.fail(f"{label}: round {n} is not a published round of this experiment")
            continue
        if v["sha256"] != rounds[n].get("model_sha256"):
            report.fail(f"{label}: model sha256 {v['sha256']} is not round {n}'s {rounds[n].get('model_sha256')}")
        if v["manifest"]["sha256"] != manifests.get(n):
            report.fail(f"{label}: points at manifest {v['manifest']['sha256']}, round {n}'s manifest hashes to "
                        f"{manifests.get(n)}")
        else:
            report.ok(f"{label}: round {n}")
