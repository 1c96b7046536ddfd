"""float64 references written from the papers' equations (not from Flower or FMA's code).

Krum (Blanchard et al. 2017, Sec. 4): score(i) = sum of ||V_i - V_j||^2 over the n - f - 2
closest j != i; Krum picks the lowest score; Multi-Krum averages the m lowest. Bulyan
(El Mhamdi et al. 2018, Alg. 1): Krum applied theta = n - 2f times, each pick removed.
Distances are direct differences in float64 (exact for float32 inputs), no Gram trick.
"""

from __future__ import annotations

import numpy as np


def sq_dist(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.array([[float(np.sum((a - b) ** 2)) for b in x] for a in x])


def krum_scores(d: np.ndarray, f: int) -> np.ndarray:
    n = d.shape[0]
    k = max(1, n - f - 2)
    return np.array([np.sort(np.delete(d[i], i))[:k].sum() for i in range(n)])


def krum(x: np.ndarray, f: int) -> int:
    return int(np.argmin(krum_scores(sq_dist(x), f)))


def multikrum(x: np.ndarray, f: int, m: int) -> list[int]:
    return sorted(int(i) for i in np.argsort(krum_scores(sq_dist(x), f), kind="stable")[:m])


def bulyan_selection(x: np.ndarray, f: int) -> list[int]:
    d = sq_dist(x)
    pool, chosen = list(range(len(x))), []
    for _ in range(len(x) - 2 * f):
        best = int(np.argmin(krum_scores(d[np.ix_(pool, pool)], f)))
        chosen.append(pool.pop(best))
    return sorted(chosen)


def min_score_gap(x: np.ndarray, f: int) -> float:
    """Relative gap between the two lowest Krum scores (a near tie is no test of stability)."""
    s = np.sort(krum_scores(sq_dist(x), f))
    return float((s[1] - s[0]) / max(s[1], 1e-300))
