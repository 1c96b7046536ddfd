"""Settings and adapters of the API function, built once per cold start (not at import)."""

from __future__ import annotations

import functools

from fma.adapters.factory import build_deps
from fma.adapters.settings import Settings
from fma.services.deps import Deps


@functools.cache
def deps() -> Deps:
    return build_deps(Settings.from_env())
