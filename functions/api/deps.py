"""Settings and adapters of the API function, built once per cold start (not at import)."""

from __future__ import annotations

import functools

from api.settings import load_settings
from fma.adapters.factory import build_deps
from fma.services.deps import Deps


@functools.cache
def deps() -> Deps:
    return build_deps(load_settings())
