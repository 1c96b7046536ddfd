"""`update_limits.max_weight_share`: cap each client's count so none holds more than a share.

Strategies weigh clients by `num_examples`. With a share s, every count above a cap c is cut to
c, where c is the largest cap (the least clipping) with c / sum_k min(n_k, c) <= s. The share
of the largest client, c / S(c), never decreases as c grows, so the cap is found exactly on the
piece of S(c) where m clients are clipped: c = s * R / (1 - s * m), R the sum of the others.
With fewer than 1/s clients no cap reaches s, and equal weights (c = the smallest count) come
closest: two clients of 900 and 100 examples under s = 0.5 weigh the same.

Pure arithmetic on exact fractions, so the same counts give the same weights everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


def weight_cap(num_examples: Sequence[int], max_share: float) -> Fraction | None:
    """The cap c described above, or None when no client exceeds the share unclipped."""
    if not 0 < max_share <= 1:
        raise ValueError("max_share must be in (0, 1]")
    counts = sorted((Fraction(int(n)) for n in num_examples), reverse=True)
    if len(counts) < 2 or any(n <= 0 for n in counts):
        return None
    share = Fraction(max_share)
    total = sum(counts)
    if counts[0] <= share * total:
        return None
    rest = total
    for m in range(1, len(counts)):
        rest -= counts[m - 1]  # R: the counts of the unclipped clients m, m+1, ...
        if share * m >= 1:
            break
        cap = share * rest / (1 - share * m)
        if counts[m] <= cap <= counts[m - 1]:
            return cap
    return counts[-1]  # fewer than 1/s clients: equal weights


def clip_weights(num_examples: Sequence[int], max_share: float | None) -> list[float]:
    """Each client's count after clipping (in the input order); unchanged without a share."""
    cap = weight_cap(num_examples, max_share) if max_share is not None else None
    if cap is None:
        return [float(n) for n in num_examples]
    return [float(min(Fraction(int(n)), cap)) for n in num_examples]
