"""max_weight_share clipping: after clipping no client holds more than the share of the clipped
total, with the least clipping that does it; with fewer than 1/share clients, equal weights."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from fma.domain.aggregation.weight_limits import clip_weights, weight_cap


def test_two_clients_of_900_and_100_under_half_weigh_the_same():
    assert clip_weights([900, 100], 0.5) == [100.0, 100.0]


def test_one_large_client_is_cut_to_the_share_and_the_rest_keep_their_counts():
    assert clip_weights([900, 100, 100], 0.5) == [200.0, 100.0, 100.0]


def test_fewer_clients_than_one_over_the_share_get_equal_weights():
    assert clip_weights([900, 100, 50], 0.2) == [50.0, 50.0, 50.0]


def test_no_share_or_no_excess_changes_nothing():
    assert clip_weights([3, 2, 1], None) == [3.0, 2.0, 1.0]
    assert clip_weights([3, 3, 3], 0.34) == [3.0, 3.0, 3.0]
    assert clip_weights([7], 0.1) == [7.0]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**15), min_size=1, max_size=30),
       st.floats(min_value=0.001, max_value=1.0))
def test_clipping_meets_the_share_with_the_least_clipping(counts, share):
    cap = weight_cap(counts, share)
    clipped = [min(Fraction(n), cap) for n in counts] if cap is not None else [Fraction(n) for n in counts]
    total = sum(clipped)
    s = Fraction(share)
    if len(counts) * s >= 1:
        assert max(clipped) <= s * total  # nobody above the share (exactly, in fractions)
    else:
        assert len(set(clipped)) == 1  # equal weights come closest
    if cap is None:
        assert clipped == [Fraction(n) for n in counts]
        return
    assert all(c <= n for c, n in zip(clipped, counts, strict=True))
    if len(counts) * s >= 1 and cap < max(counts):  # a larger cap would break the share
        bigger = cap * Fraction(1_000_001, 1_000_000)
        raised = [min(Fraction(n), bigger) for n in counts]
        assert max(raised) > s * sum(raised)
    floats = clip_weights(counts, share)
    assert floats == [float(c) for c in clipped]
