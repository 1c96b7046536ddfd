"""Registry and lineage parsers of untrusted input: only the documented error escapes, and the
version sort key orders by semantic-version precedence."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fma.domain.errors import InvalidInput
from fma.domain.registry import parse_registry_name, parse_stage, parse_version
from fma.services.lineage import parse_from

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                  max_size=4), max_leaves=12)
NUMBER = st.integers(min_value=0, max_value=999_999_999)
PRE = st.lists(st.from_regex(r"\A(0|[1-9][0-9]{0,3}|[a-z][a-z0-9-]{0,5})\Z"), min_size=1, max_size=3).map(".".join)


@given(JSON | st.text(max_size=80))
def test_any_version_value_parses_or_is_invalid_version(value):
    try:
        parsed = parse_version(value)
    except InvalidInput as exc:
        assert exc.code == "INVALID_VERSION"
    else:
        assert parsed.text == value


@given(JSON | st.text(max_size=140))
def test_any_name_parses_or_is_invalid_registry_name(value):
    try:
        assert parse_registry_name(value) == value
    except InvalidInput as exc:
        assert exc.code == "INVALID_REGISTRY_NAME"


@given(JSON)
def test_any_stage_parses_or_is_invalid_stage(value):
    try:
        assert parse_stage(value).value == value
    except InvalidInput as exc:
        assert exc.code == "INVALID_STAGE"


@given(JSON)
def test_any_from_value_parses_or_is_a_400(value):
    try:
        ref = parse_from(value)
    except InvalidInput as exc:
        assert exc.status == 400 and exc.code in ("INVALID_BODY", "UNKNOWN_FIELD", "MISSING_FIELD", "INVALID_FROM")
    else:
        assert isinstance(ref.experiment_id, str) and ref.round >= 0


@given(st.lists(st.tuples(NUMBER, NUMBER, NUMBER, st.none() | PRE), min_size=2, max_size=8, unique=True))
def test_sort_key_orders_by_core_then_prerelease_before_release(versions):
    texts = [f"{a}.{b}.{c}" + (f"-{p}" if p else "") for a, b, c, p in versions]
    by_key = sorted(texts, key=lambda t: parse_version(t).sort_key)
    cores = [tuple(int(x) for x in t.split("-")[0].split(".")) for t in by_key]
    assert cores == sorted(cores)
    for left, right in itertools.pairwise(by_key):
        if left.split("-")[0] == right.split("-")[0] and "-" not in right:
            assert "-" in left or left == right  # the release sorts after its prereleases


@pytest.mark.parametrize(("version", "expected"), [("1.2.3", "1.2.4"), ("2.0.0-rc.1", "2.0.0"),
                                                   ("0.0.0+build.5", "0.0.1")])
def test_next_patch(version, expected):
    assert parse_version(version).next_patch() == expected


@pytest.mark.parametrize("bad", ["1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.3-", "1.2.3-01", "1.2.3+", "v1.2.3",
                                 " 1.2.3", "1.2.3\n", "1234567890.0.0", "1.2.3-a..b", "x" * 65])
def test_invalid_semver_is_refused(bad):
    with pytest.raises(InvalidInput):
        parse_version(bad)


@pytest.mark.parametrize("bad", ["", "-a", ".a", "a b", "a/b", "abc\n", "a" * 129, "ü"])
def test_invalid_registry_names_are_refused(bad):
    with pytest.raises(InvalidInput):
        parse_registry_name(bad)
