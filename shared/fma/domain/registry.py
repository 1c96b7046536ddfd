"""Model registry and lineage: names, semantic versions, stages and the records the stores keep.

Pure parsing and ordering (no I/O). A version string is kept exactly as sent; `sort_key` orders
versions by semantic-version precedence of the core (prereleases before their release) so a
store can list them newest first and find the highest one without reading them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fma.domain.errors import InvalidInput

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# semver.org's grammar; each number at most 9 digits so that the sort key can zero-pad it.
_NUM = r"(0|[1-9]\d{0,8})"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER = re.compile(
    rf"^{_NUM}\.{_NUM}\.{_NUM}(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
MAX_VERSION = 64
MAX_NOTES = 2000
FIRST_VERSION = "1.0.0"


class Stage(StrEnum):
    NONE = "none"
    STAGING = "staging"
    PRODUCTION = "production"


@dataclass(frozen=True)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: str | None
    build: str | None
    text: str

    @property
    def sort_key(self) -> str:
        """Lexicographic order = precedence of the core; a release ('~') sorts after its prereleases."""
        core = f"{self.major:09d}.{self.minor:09d}.{self.patch:09d}"
        tail = f"-{self.prerelease}" if self.prerelease else "~"
        return core + tail + (f"+{self.build}" if self.build else "")

    def next_patch(self) -> str:
        """The default next version: a prerelease's own release, else patch + 1."""
        if self.prerelease:
            return f"{self.major}.{self.minor}.{self.patch}"
        return f"{self.major}.{self.minor}.{self.patch + 1}"


def parse_version(value: object) -> SemVer:
    if not isinstance(value, str) or len(value) > MAX_VERSION or not (m := SEMVER.fullmatch(value)):
        raise InvalidInput("version must be a semantic version such as 1.2.3 (semver.org)",
                           code="INVALID_VERSION", details={"field": "version"})
    return SemVer(int(m[1]), int(m[2]), int(m[3]), m[4], m[5], value)


def parse_registry_name(value: object) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise InvalidInput("name must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
                           code="INVALID_REGISTRY_NAME", details={"field": "name"})
    return value


def parse_stage(value: object) -> Stage:
    try:
        return Stage(value) if isinstance(value, str) else Stage("?")
    except ValueError:
        raise InvalidInput(f"stage must be one of {[s.value for s in Stage]}", code="INVALID_STAGE",
                           details={"field": "stage"}) from None


def parse_notes(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NOTES:
        raise InvalidInput(f"notes must be a string of at most {MAX_NOTES} characters", code="INVALID_NOTES",
                           details={"field": "notes"})
    return value


@dataclass(frozen=True)
class RegistryVersion:
    """One immutable, named model version; only `stage` ever changes."""

    name: str
    version: str
    experiment_id: str
    round: int
    sha256: str
    size: int
    stage: Stage
    notes: str | None
    created_by: str
    created_at: str
    manifest_key: str
    manifest_sha256: str

    @property
    def sort_key(self) -> str:
        return parse_version(self.version).sort_key

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "experiment_id": self.experiment_id, "round": self.round,
            "sha256": self.sha256, "size": self.size, "stage": str(self.stage), "notes": self.notes,
            "created_by": self.created_by, "created_at": self.created_at,
            "manifest": {"key": self.manifest_key, "sha256": self.manifest_sha256},
        }


@dataclass(frozen=True)
class RegistryName:
    name: str
    owner: str
    versions: int
    latest_version: str | None
    production_version: str | None
    created_at: str
    updated_at: str

    def to_public(self) -> dict[str, Any]:
        return {"name": self.name, "owner": self.owner, "versions": self.versions,
                "latest_version": self.latest_version, "production_version": self.production_version,
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True)
class RoundRef:
    """An experiment's round: a fork's parent, or a child that forked from one of our rounds."""

    experiment_id: str
    round: int

    def to_public(self) -> dict[str, Any]:
        return {"experiment_id": self.experiment_id, "round": self.round}


@dataclass(frozen=True)
class Lineage:
    """What an experiment's detail shows about its history (read with one query, no scan)."""

    parent: RoundRef | None
    children: list[RoundRef]
    registry: list[dict[str, Any]]
    parent_manifest_sha256: str | None = None
