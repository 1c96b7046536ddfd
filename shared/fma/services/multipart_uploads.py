"""Multipart uploads of large updates and initial models (issue 13 item 4).

The API hands out a plan (upload id, part size, part count, presigned part URLs); the client
PUTs the parts straight to the store, asks which parts the store holds when it resumes, and
then asks the API to complete. The API completes only what the store itself lists
(ListParts), never the client's word: every part of the plan, each of its planned size, the
declared total. The completed object raises the same object-created event as any upload, and
ingest checks it as it checks every update (sha256 over the bytes, header, spec, norms).

Who may complete: the upload's key names its client (updates) or experiment (initial model),
and the upload id is the one the API recorded when it made the plan, so no caller can reach
another's upload.
"""

from __future__ import annotations

from typing import Any

from fma.domain.errors import Conflict, InvalidInput, NotFound
from fma.domain.multipart import PAGE_PARTS, Part, Plan, check_parts, parse_completion, plan_for
from fma.services.deps import Deps
from fma.services.ports import ModelStore


def start(deps: Deps, key: str) -> str:
    """A new multipart upload of `key` (its id)."""
    return deps.store.multipart_create(key)


def wants_multipart(deps: Deps, size: int) -> bool:
    return size >= deps.limits.multipart_threshold_bytes


def plan_of(deps: Deps, size: int) -> Plan:
    return plan_for(size, deps.limits.multipart_part_bytes)


def plan_body(deps: Deps, key: str, upload_id: str, plan: Plan) -> dict[str, Any]:
    """`{"multipart": {...}}`: the plan with the first page of part URLs (`next_part` pages on)."""
    urls, next_part = _part_urls(deps.store, key, upload_id, plan, range(1, plan.part_count + 1), deps)
    return {"multipart": {"upload_id": upload_id, "part_size": plan.part_size, "part_count": plan.part_count,
                          "size": plan.size, "parts": urls, "next_part": next_part}}


def parts_body(deps: Deps, key: str, upload_id: str | None, plan: Plan, from_part: int) -> dict[str, Any]:
    """What a resuming client asks: the parts the store holds and fresh URLs for the missing ones
    (from part `from_part`, one page)."""
    held = _held(deps.store, key, upload_id)
    numbers = {p.part_number for p in held}
    missing = [n for n in range(from_part, plan.part_count + 1) if n not in numbers]
    urls, next_part = _part_urls(deps.store, key, upload_id or "", plan, missing, deps)
    return {"upload_id": upload_id, "part_size": plan.part_size, "part_count": plan.part_count, "size": plan.size,
            "uploaded": [{"part_number": p.part_number, "size": p.size, "etag": p.etag} for p in held],
            "parts": urls, "next_part": next_part}


def complete(deps: Deps, key: str, upload_id: str | None, plan: Plan, body: object) -> list[Part]:
    """Validate the store's parts against the plan (and the client's ETags) and complete."""
    claimed = parse_completion(body, plan.part_count)
    held = _held(deps.store, key, upload_id)
    parts = check_parts(plan, held, claimed)
    deps.store.multipart_complete(key, upload_id or "", parts)
    return parts


def parse_from(raw: str | None, part_count: int) -> int:
    """The `from` query parameter: the first part number to list (default 1)."""
    if raw is None:
        return 1
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or not 1 <= int(raw) <= part_count:
        raise InvalidInput(f"from must be a part number from 1 to {part_count}", details={"field": "from"})
    return int(raw)


def _held(store: ModelStore, key: str, upload_id: str | None) -> list[Part]:
    """The parts of the recorded upload; 409 if it was completed (the object is there), else 404."""
    held = store.multipart_parts(key, upload_id) if upload_id else None
    if held is not None:
        return held
    if upload_id and store.exists(key):
        raise Conflict("this multipart upload was completed already", code="MULTIPART_COMPLETED")
    raise NotFound("no multipart upload in flight for this update (completed, aborted or expired: ask for a new "
                   "upload)", code="UPLOAD_NOT_FOUND")


def _part_urls(store: ModelStore, key: str, upload_id: str, plan: Plan, numbers: Any,
               deps: Deps) -> tuple[list[dict[str, Any]], int | None]:
    numbers = list(numbers)
    page, rest = numbers[:PAGE_PARTS], numbers[PAGE_PARTS:]
    expires = deps.limits.presign_seconds
    urls = [{"part_number": n, "size": plan.part_bytes(n),
             "url": store.multipart_part_url(key, upload_id, n, plan.part_bytes(n), expires)} for n in page]
    return urls, (rest[0] if rest else None)
