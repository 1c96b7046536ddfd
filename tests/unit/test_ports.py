"""Every connector implements every port with a compatible signature (a structural check that
fails the moment a repository method is added to one connector and not to the others)."""

from __future__ import annotations

import inspect

import pytest

from fma.services import ports
from fma.services.deps import Deps

METADATA_PORTS = (ports.TokenStore, ports.TokenAuthStore, ports.ExperimentStore, ports.RoundStore, ports.LifecycleStore,
                  ports.DueStore, ports.FailureStore, ports.IdempotencyStore, ports.MetadataStore)


def connector_classes() -> list[tuple[str, type, type]]:
    from fma.adapters.repository import DynamoRepository
    from fma.adapters.s3_store import S3ObjectStore

    found = [("aws", DynamoRepository, S3ObjectStore)]
    try:
        from fma.adapters.memory import MemoryModelStore, MemoryRepository

        found.append(("memory", MemoryRepository, MemoryModelStore))
    except ImportError:
        pass
    try:
        from fma.adapters.sqlite_fs import FileModelStore, SqliteRepository

        found.append(("sqlite_fs", SqliteRepository, FileModelStore))
    except ImportError:
        pass
    return found


def port_methods(protocol: type) -> dict[str, inspect.Signature]:
    names = {n for n in dir(protocol) if not n.startswith("_") and callable(getattr(protocol, n))}
    return {n: inspect.signature(getattr(protocol, n)) for n in sorted(names)}


def incompatibility(expected: inspect.Signature, actual: inspect.Signature) -> str | None:
    """Why an implementation cannot be called the way the port is (None if it can)."""
    exp = [p for p in expected.parameters.values() if p.name != "self"]
    act = {p.name: p for p in actual.parameters.values() if p.name != "self"}
    act_positional = [p.name for p in actual.parameters.values()
                      if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i, p in enumerate(exp):
        if p.name not in act:
            return f"missing parameter {p.name!r}"
        if p.kind == p.POSITIONAL_OR_KEYWORD and (i >= len(act_positional) or act_positional[i] != p.name):
            return f"parameter {p.name!r} is not positional at index {i}"
        if p.default is not p.empty and act[p.name].default is act[p.name].empty:
            return f"parameter {p.name!r} is optional in the port but required here"
    extra = [p for n, p in act.items() if n not in {e.name for e in exp}
             and p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if extra:
        return f"extra required parameters {[p.name for p in extra]}"
    return None


@pytest.mark.parametrize("name,repo_cls,store_cls", connector_classes(), ids=lambda v: v if isinstance(v, str) else "")
def test_connector_implements_every_port(name, repo_cls, store_cls):
    problems = []
    for protocol, cls in [*((p, repo_cls) for p in METADATA_PORTS), (ports.ModelStore, store_cls)]:
        for method, signature in port_methods(protocol).items():
            impl = getattr(cls, method, None)
            if impl is None:
                problems.append(f"{cls.__name__}.{method} is missing ({protocol.__name__})")
                continue
            why = incompatibility(signature, inspect.signature(impl))
            if why:
                problems.append(f"{cls.__name__}.{method}: {why}")
    assert not problems, "\n".join(problems)


def test_local_modes_granting_store_implements_the_model_store_port():
    """Local mode wraps the connector's store in gateway grants (fma.local.objects): the wrapper
    is the store every local-mode handler sees, so it must take every argument the port does
    (a missing `filename=` once made GET .../models/{n} a 500 on aws-emulation)."""
    from fma.local.objects import GrantingStore

    problems = []
    for method, signature in port_methods(ports.ModelStore).items():
        impl = getattr(GrantingStore, method, None)
        if impl is None:  # forwarded by __getattr__ to the connector's own store, checked above
            continue
        why = incompatibility(signature, inspect.signature(impl))
        if why:
            problems.append(f"GrantingStore.{method}: {why}")
    assert not problems, "\n".join(problems)


def test_public_repository_methods_are_all_in_a_port():
    """A method added to the aws repository but to no port is invisible to the other connectors."""
    from fma.adapters.repository import DynamoRepository

    declared = set(port_methods(ports.MetadataStore)) | set(port_methods(ports.RegistryStore))
    public = {n for n in dir(DynamoRepository) if not n.startswith("_") and callable(getattr(DynamoRepository, n))}
    assert public - declared == set()


def test_signature_check_catches_mismatches():
    class Port:
        def f(self, a: int, b: int = 0) -> None: ...

    class Renamed:
        def f(self, x: int, b: int = 0) -> None: ...

    class RequiredOptional:
        def f(self, a: int, b: int) -> None: ...

    class ExtraRequired:
        def f(self, a: int, b: int = 0, *, c: int) -> None: ...

    class Fine:
        def f(self, a: int, b: int = 0, c: int = 1) -> None: ...

    expected = inspect.signature(Port.f)
    assert incompatibility(expected, inspect.signature(Renamed.f)) == "missing parameter 'a'"
    assert "required here" in incompatibility(expected, inspect.signature(RequiredOptional.f))
    assert "extra required" in incompatibility(expected, inspect.signature(ExtraRequired.f))
    assert incompatibility(expected, inspect.signature(Fine.f)) is None


def test_deps_fields_are_typed_by_the_ports():
    hints = {f: Deps.__annotations__[f] for f in ("repo", "store")}
    assert hints == {"repo": "MetadataStore", "store": "ModelStore"}
