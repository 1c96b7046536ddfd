"""Multipart uploads of large updates and initial models: the plan the API hands out and the
checks it makes before it completes one (docs/api-contract.md, "Multipart uploads").

Why a fixed plan: the server, not the client, decides the part size, so it can validate what
S3 holds (ListParts) against a plan it can recompute from the declared size alone. Every part
is exactly `part_size` bytes except the last, which holds the rest. S3 allows 10,000 parts of
5 MiB to 5 GiB (the last may be smaller); the part size grows with the object so that a
50 GiB update still fits in 10,000 parts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fma.domain.errors import InvalidInput

MIB = 1 << 20
MAX_PARTS = 10_000
MAX_PART_BYTES = 5 << 30
#: the largest update (or initial model) any deployment may allow: 50 GiB (> 50 GB).
MAX_OBJECT_BYTES = 50 << 30
#: part URLs listed in one answer (the plan, or one page of `GET .../parts`).
PAGE_PARTS = 1000
#: S3 ETags are a quoted hex MD5 (or "<md5>-<n>"): anything longer or stranger is refused.
ETAG = re.compile(r'^"?[0-9A-Za-z-]{1,64}"?$')


@dataclass(frozen=True)
class Plan:
    """How an object of `size` bytes is cut into parts."""

    size: int
    part_size: int

    @property
    def part_count(self) -> int:
        return -(-self.size // self.part_size)

    def part_bytes(self, part_number: int) -> int:
        """The exact size of part `part_number` (1-based)."""
        if part_number < self.part_count:
            return self.part_size
        return self.size - self.part_size * (self.part_count - 1)


@dataclass(frozen=True)
class Part:
    """One part S3 holds (ListParts): its number, size and ETag."""

    part_number: int
    size: int
    etag: str


def plan_for(size: int, part_bytes: int) -> Plan:
    """The plan for `size` bytes: parts of at least `part_bytes` (the deployment's setting),
    more when 10,000 of them would not hold `size`, rounded up to a whole MiB (past 1 MiB)."""
    if size < 1:
        raise ValueError("size must be positive")
    part = max(part_bytes, -(-size // MAX_PARTS))
    if part > MIB:
        part = -(-part // MIB) * MIB
    return Plan(size, min(part, MAX_PART_BYTES))


def parse_completion(body: object, part_count: int) -> dict[int, str]:
    """`{"parts": [{"part_number", "etag"}, ...]}` -> {part number: etag}; every malformed body
    is an InvalidInput naming the field (never another exception)."""
    if not isinstance(body, Mapping) or set(body) - {"parts"} or "parts" not in body:
        raise InvalidInput('the body must be {"parts": [{"part_number", "etag"}, ...]}', code="INVALID_BODY",
                           details={"field": "parts"})
    parts = body["parts"]
    if not isinstance(parts, list) or not 1 <= len(parts) <= part_count:
        raise InvalidInput(f"parts must be a list of 1 to {part_count} parts", details={"field": "parts"})
    out: dict[int, str] = {}
    for i, part in enumerate(parts):
        number, etag = _one_part(part, i, part_count)
        if number in out:
            raise InvalidInput(f"part {number} is listed twice", code="MULTIPART_DUPLICATE_PART",
                               details={"field": f"parts[{i}]", "part_number": number})
        out[number] = etag
    return out


def _one_part(part: object, i: int, part_count: int) -> tuple[int, str]:
    if not isinstance(part, Mapping) or set(part) != {"part_number", "etag"}:
        raise InvalidInput("each part is {part_number, etag}", details={"field": f"parts[{i}]"})
    number, etag = part["part_number"], part["etag"]
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= part_count:
        raise InvalidInput(f"part_number must be an integer from 1 to {part_count}",
                           details={"field": f"parts[{i}].part_number"})
    if not isinstance(etag, str) or not ETAG.fullmatch(etag):
        raise InvalidInput("etag must be the ETag the part upload answered", details={"field": f"parts[{i}].etag"})
    return number, etag.strip('"')


def check_parts(plan: Plan, held: Iterable[Part], claimed: Mapping[int, str] | None = None) -> list[Part]:
    """The parts S3 holds, in order, if they are exactly the plan: every part 1..part_count,
    each of its planned size, the total the declared size (and, given `claimed`, each with the
    ETag the client reports). Else InvalidInput with the first offending part."""
    by_number = {p.part_number: p for p in held}
    for n in range(1, plan.part_count + 1):
        part = by_number.get(n)
        if part is None:
            missing = [m for m in range(1, plan.part_count + 1) if m not in by_number]
            raise InvalidInput(f"part {n} of {plan.part_count} has not been uploaded", code="MULTIPART_INCOMPLETE",
                               details={"part_number": n, "missing": missing[:100], "part_count": plan.part_count})
        if part.size != plan.part_bytes(n):
            raise InvalidInput(f"part {n} has {part.size} bytes, the plan says {plan.part_bytes(n)}",
                               code="MULTIPART_PART_SIZE",
                               details={"part_number": n, "size": part.size, "expected": plan.part_bytes(n)})
        if claimed is not None and claimed.get(n, part.etag) != part.etag.strip('"'):
            raise InvalidInput(f"part {n}'s etag is not the one the store holds", code="MULTIPART_ETAG_MISMATCH",
                               details={"part_number": n})
    extra = sorted(set(by_number) - set(range(1, plan.part_count + 1)))
    if extra:
        raise InvalidInput(f"part {extra[0]} is beyond the plan's {plan.part_count} parts",
                           code="MULTIPART_PART_COUNT",
                           details={"part_number": extra[0], "part_count": plan.part_count})
    total = sum(p.size for p in by_number.values())
    if total != plan.size:  # unreachable when every part has its planned size; kept as the contract
        raise InvalidInput(f"the parts hold {total} bytes, the declared size is {plan.size}",
                           code="MULTIPART_SIZE", details={"size": total, "expected": plan.size})
    return [by_number[n] for n in range(1, plan.part_count + 1)]
