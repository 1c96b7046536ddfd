"""The multipart plan and the completion body parser (fma.domain.multipart): the plan covers
every size up to 50 GiB in at most 10,000 parts of S3's allowed sizes, and no completion body
a client can send makes the parser raise anything but InvalidInput."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fma.domain.errors import InvalidInput
from fma.domain.multipart import MAX_OBJECT_BYTES, MAX_PARTS, MIB, Part, check_parts, parse_completion, plan_for


@given(st.integers(1, MAX_OBJECT_BYTES))
def test_every_size_up_to_50_gib_fits_in_10000_parts_of_s3_sizes(size):
    plan = plan_for(size, 64 * MIB)
    assert plan.part_count <= MAX_PARTS and 5 * MIB <= plan.part_size <= 5 << 30
    assert plan.part_size % MIB == 0
    assert sum(plan.part_bytes(n) for n in range(1, plan.part_count + 1)) == size
    assert 0 < plan.part_bytes(plan.part_count) <= plan.part_size


def test_the_part_size_grows_past_the_setting_only_when_10000_parts_would_not_hold_it():
    assert plan_for(300 * MIB, 64 * MIB).part_size == 64 * MIB
    assert plan_for(300 * MIB, 64 * MIB).part_count == 5
    huge = plan_for(1 << 40, 64 * MIB)  # 1 TiB: 10,000 parts of 110 MiB
    assert huge.part_count <= MAX_PARTS and huge.part_size == 105 * MIB


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                 max_size=4), max_leaves=20)
PART_LIKE = st.fixed_dictionaries({"part_number": JSON | st.integers(-5, 20), "etag": JSON | st.text(max_size=70)})


@settings(max_examples=400)
@given(JSON | st.fixed_dictionaries({"parts": st.lists(PART_LIKE | JSON, max_size=6)}))
def test_no_completion_body_raises_anything_but_invalid_input(body):
    try:
        parsed = parse_completion(body, 10)
    except InvalidInput as exc:
        assert exc.code and exc.details
        return
    assert all(1 <= n <= 10 and isinstance(e, str) for n, e in parsed.items())


def test_check_parts_names_the_first_offending_part():
    plan = plan_for(2500, 1000)
    good = [Part(1, 1000, "a"), Part(2, 1000, "b"), Part(3, 500, "c")]
    assert check_parts(plan, good, {1: "a"}) == good
    cases = [([good[0], good[2]], "MULTIPART_INCOMPLETE", 2), ([good[0], Part(2, 999, "b"), good[2]],
             "MULTIPART_PART_SIZE", 2), ([*good[:2], Part(3, 501, "c")], "MULTIPART_PART_SIZE", 3),
             ([*good, Part(4, 1, "d")], "MULTIPART_PART_COUNT", 4)]
    for held, code, number in cases:
        with pytest.raises(InvalidInput) as err:
            check_parts(plan, held)
        assert (err.value.code, err.value.details["part_number"]) == (code, number)
