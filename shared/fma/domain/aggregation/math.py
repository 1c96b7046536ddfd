"""Pure numpy formulas, apart from any orchestration (Flower's `aggregate.py` beside its
strategies). Rows are clients, columns are coordinates of one shard of the flat vector.

Each function is checked against Flower's function or the paper's formula in
tests/unit/aggregation.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from fractions import Fraction

import numpy as np

try:  # OpenBLAS axpy: one fused pass, in place; scipy ships with dp-accounting in the layer.
    from scipy.linalg.blas import daxpy as _daxpy
    from scipy.linalg.blas import saxpy as _saxpy
except ImportError:  # pragma: no cover - numpy fallback keeps the domain importable alone
    _saxpy = _daxpy = None


_CONTROLLER: list = []


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """OpenBLAS on one thread for a streaming pass.

    axpy is memory-bound: one thread already runs at np.add's speed, while extra BLAS threads
    spin against the download threads (and any neighbour) and make timings erratic. Needs
    threadpoolctl; without it BLAS keeps its own threading (same results, noisier timings).
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        yield
        return
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    with _CONTROLLER[0].limit(limits=1, user_api="blas"):
        yield


PORTABLE_BLOCK = 1 << 16


def axpy(alpha: float, x: np.ndarray, y: np.ndarray, *, portable: bool = False) -> None:
    """y += alpha * x in place (y contiguous 1-D, alpha rounded to y's dtype).

    Default: BLAS axpy, one fused pass (FMA), as fast as a plain np.add. Its bits depend on the
    BLAS kernel and on where slices start, so they are stable for one machine type and one set
    of EngineOptions. `portable`: numpy's separately rounded multiply then add, in cache-sized
    blocks, ~1.3x slower but bit-identical on any CPU and any chunking (IEEE 754 per element).
    """
    if portable:
        a = y.dtype.type(alpha)
        tmp = np.empty(min(y.size, PORTABLE_BLOCK), dtype=y.dtype)
        for s in range(0, y.size, PORTABLE_BLOCK):
            part, t = y[s : s + PORTABLE_BLOCK], tmp[: min(PORTABLE_BLOCK, y.size - s)]
            np.multiply(x[s : s + PORTABLE_BLOCK], a, out=t, dtype=y.dtype)
            np.add(part, t, out=part)
        return
    if _saxpy is not None and x.dtype == y.dtype and y.dtype in (np.float32, np.float64):
        fn = _saxpy if y.dtype == np.float32 else _daxpy
        r = fn(x, y, a=alpha)
        if r is not y:  # pragma: no cover - f2py had to copy y (it returns y itself otherwise)
            y[...] = r
        return
    y += np.multiply(x, y.dtype.type(alpha), dtype=y.dtype)


TRANSPOSE_BLOCK = 256
GRAM_BLOCK = 16384


def sorted_columns(rows: np.ndarray) -> np.ndarray:
    """(coordinates, clients) array, each row sorted: the clients' values per coordinate.

    A cache-blocked transpose then a sort along the contiguous axis: for tens of clients this is
    ~10x faster than sorting along the client axis in place (np.sort(axis=0) gathers each
    strided column) and several times faster than np.median's per-column selection.
    """
    k, n = rows.shape
    cols = np.empty((n, k), dtype=rows.dtype)
    for j in range(0, n, TRANSPOSE_BLOCK):
        cols[j : j + TRANSPOSE_BLOCK] = rows[:, j : j + TRANSPOSE_BLOCK].T
    cols.sort(axis=1)
    return cols


def median_rows(rows: np.ndarray) -> np.ndarray:
    """Coordinate-wise median, as np.median: the mean of the two middle values for even n."""
    n = rows.shape[0]
    srt = sorted_columns(rows)
    lo, hi = (n - 1) // 2, n // 2
    return srt[:, lo].copy() if lo == hi else (srt[:, lo] + srt[:, hi]) / rows.dtype.type(2)


def trim_count(beta: float, n: int) -> int:
    """floor(beta * n) in exact arithmetic on the decimal the user wrote.

    `int(0.29 * 100)` is 28 (the float product is 28.999...); the user asked for 29. `repr`
    gives the shortest decimal that reads back as `beta`, i.e. the JSON number as written.
    """
    return math.floor(Fraction(repr(float(beta))) * n)


def trimmed_mean_rows(rows: np.ndarray, beta: float) -> np.ndarray:
    """Mean of the values left after cutting floor(beta * n) from each end (scipy's trim_mean)."""
    if not 0.0 <= beta < 0.5:
        raise ValueError("beta must be in [0, 0.5)")
    n = rows.shape[0]
    cut = trim_count(beta, n)
    if not cut:
        return np.mean(rows, axis=0, dtype=np.float64).astype(rows.dtype)
    kept = sorted_columns(rows)[:, cut : n - cut]
    return np.mean(kept, axis=1, dtype=np.float64).astype(rows.dtype)


#: up to this many rows the centre is found with a min/max network over whole rows.
NETWORK_ROWS = 7


def robust_centre(rows: np.ndarray, num_malicious: int) -> np.ndarray:
    """Per coordinate, the median of the first m = max(3, 2f + 1) rows (all rows if fewer).

    Any 2f + 1 rows hold at most f Byzantine ones, so their median lies inside the honest
    clients' range of every coordinate: no f clients can move it outside. m small keeps this
    cheap: an odd-even transposition network of np.minimum / np.maximum over whole rows, or a
    selection over the transposed block for large f.
    """
    m = min(rows.shape[0], max(3, 2 * num_malicious + 1))
    m -= 1 - m % 2  # odd, so the median is one of the values
    if m <= NETWORK_ROWS:
        r = [rows[i].copy() for i in range(m)]
        for p in range(m):
            for i in range(p % 2, m - 1, 2):
                low = np.minimum(r[i], r[i + 1])
                np.maximum(r[i], r[i + 1], out=r[i + 1])
                r[i] = low
        return r[m // 2]
    cols = np.empty((rows.shape[1], m), dtype=rows.dtype)
    for j in range(0, rows.shape[1], TRANSPOSE_BLOCK):
        cols[j : j + TRANSPOSE_BLOCK] = rows[:m, j : j + TRANSPOSE_BLOCK].T
    return np.partition(cols, m // 2, axis=1)[:, m // 2]


def add_sq_distances(rows: np.ndarray, out: np.ndarray, num_malicious: int = 0) -> None:
    """out[i, j] += ||rows_i - rows_j||^2 through a Gram matrix; `rows` is overwritten.

    Distances are translation-invariant, so rows are centred first, on `robust_centre`: a
    point inside the honest clients' range that no f clients can move. Centring on one client
    (the lowest id, say) let that client choose the centre: 1e4 away, float32 cancellation then
    hid a colluder 0.4 away (issue 19). Centred this way an honest pair's distance is computed
    from values of the honest spread's magnitude, so its error stays at float32 rounding of
    that spread whatever one outlier does; the Gram matrix is summed over column blocks in
    float64. A row so far away that its squares overflow float32 gets an infinite distance.
    """
    rows -= robust_centre(rows, num_malicious)
    gram = np.zeros(out.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        for j in range(0, rows.shape[1], GRAM_BLOCK):
            block = rows[:, j : j + GRAM_BLOCK]
            gram += block @ block.T
        sq = np.diag(gram).copy()
        dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
    out += np.where(np.isfinite(dist), dist, np.inf)


def check_krum_precondition(n: int, num_malicious: int) -> None:
    """Blanchard et al. 2017 prove Krum only for n > 2f + 2; below it a score sums no neighbour."""
    if n <= 2 * num_malicious + 2:
        raise ValueError(f"Krum needs n > 2f + 2 clients; got n={n}, f={num_malicious}")


def krum_scores(dist: np.ndarray, num_malicious: int) -> np.ndarray:
    """Score of each client: sum of its squared distances to its n - f - 2 nearest others."""
    n = dist.shape[0]
    closest = max(1, n - num_malicious - 2)  # Bulyan's later pools go below 2f + 3 (as Flower)
    scores = np.empty(n)
    for i in range(n):
        others = np.delete(dist[i], i)
        scores[i] = np.sort(others)[:closest].sum()
    return scores


def krum_select(dist: np.ndarray, num_malicious: int, num_to_select: int) -> list[int]:
    """Indices Krum keeps: the lowest score (Krum) or the `num_to_select` lowest (MultiKrum)."""
    check_krum_precondition(dist.shape[0], num_malicious)
    scores = krum_scores(dist, num_malicious)
    order = np.argsort(scores, kind="stable")
    return sorted(int(i) for i in order[: max(1, num_to_select)])


def bulyan_select(dist: np.ndarray, num_malicious: int) -> list[int]:
    """Bulyan's first stage: Krum applied n - 2f times, each pick removed from the pool."""
    n = dist.shape[0]
    if n < 4 * num_malicious + 3:
        raise ValueError(f"Bulyan needs n >= 4f + 3 clients; got n={n}, f={num_malicious}")
    pool = list(range(n))
    chosen: list[int] = []
    for _ in range(n - 2 * num_malicious):
        sub = dist[np.ix_(pool, pool)]
        best = int(np.argmin(krum_scores(sub, num_malicious)))
        chosen.append(pool.pop(best))
    return chosen


def bulyan_rows(rows: np.ndarray, num_malicious: int) -> np.ndarray:
    """Bulyan's second stage over the selected rows: per coordinate, the mean of the
    theta - 2f values closest to the median."""
    theta = rows.shape[0]
    beta = theta - 2 * num_malicious
    med = median_rows(rows)
    idx = np.argpartition(np.abs(rows - med), kth=beta - 1, axis=0)[:beta]
    closest = np.take_along_axis(rows, idx, axis=0)
    return np.mean(closest, axis=0, dtype=np.float64).astype(rows.dtype)


def example_weights(num_examples: Sequence[int]) -> np.ndarray:
    """n_k / sum(n) in float64 (FedAvg's weights)."""
    n = np.asarray(num_examples, dtype=np.float64)
    return n / n.sum()


def clip_scale(norm: float, clipping_norm: float) -> float:
    """min(1, C / ||delta||): the FlatClip factor of McMahan et al. 2018 (and Flower)."""
    return 1.0 if norm <= clipping_norm else clipping_norm / norm
