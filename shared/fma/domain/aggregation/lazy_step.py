"""A server step evaluated range by range, so the fanout reduce of FedAvgM, FedAdagrad, FedAdam
and FedYogi never holds the model (issue 14: a 50 GB model under 3 GB per task).

Their server step is elementwise: element i of the new model and of the new state depends only
on element i of the mean, of the global model and of the old state (and on scalars: the step
count, the learning rates). So range [s, e) of every output is the same step over range [s, e)
of every input, with the same numpy operations: bit for bit the values of the step over the
whole vector (the single plan). The mean comes from the pass's pieces (lazy_result.PieceVector),
the global model and the old state from ranged reads (FlatLayout.gather). Each output (the
model, and each state vector) is a `StepVector`, read range by range by the streaming encoder;
a range is computed once per output that reads it (the model and each state vector are written
as separate objects, so the step runs once per output: compute traded for memory), in blocks
of `BLOCK_ELEMS` so that its temporaries do not grow with the range.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Outputs = dict[str, np.ndarray]


#: elements the step computes at once: its temporaries (a dozen arrays for Adam) stay this
#: small whatever range the encoder asks for (1 MiB of float32).
BLOCK_ELEMS = 1 << 18


class RangeStep:
    """`compute(s, e)` -> every output over [s, e), evaluated in blocks of `block` elements;
    the last range asked for is kept (the tensors of one output are read in order, range after
    range)."""

    def __init__(self, compute: Callable[[int, int], Outputs], block: int = BLOCK_ELEMS) -> None:
        self.compute, self.block = compute, max(1, int(block))
        self._last: tuple[tuple[int, int], Outputs] | None = None

    def outputs(self, s: int, e: int) -> Outputs:
        if self._last is None or self._last[0] != (s, e):
            self._last = None  # let the previous range go before computing the next
            self._last = ((s, e), self._blocks(s, e))
        return self._last[1]

    def _blocks(self, s: int, e: int) -> Outputs:
        out: Outputs = {}
        for a in range(s, e, self.block):
            b = min(e, a + self.block)
            for name, values in self.compute(a, b).items():
                if name not in out:
                    out[name] = np.empty(e - s, dtype=values.dtype)
                out[name][a - s : b - s] = values
        return out


class StepVector:
    """One output of a `RangeStep` as a flat vector read by range (duck-types PieceVector:
    `FlatLayout.split` and `lazy_tensors` turn it into LazyOutput tensors)."""

    def __init__(self, step: RangeStep, name: str, total: int, dtype: np.dtype) -> None:
        self.step, self.name = step, name
        self.size, self.dtype, self.shape, self.ndim = total, np.dtype(dtype), (total,), 1

    def read(self, s: int, e: int) -> np.ndarray:
        return self.step.outputs(s, e)[self.name]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self.read(0, self.size)
        return whole if dtype is None else whole.astype(dtype, copy=False)
