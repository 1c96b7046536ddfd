"""The fanout plan's two tasks over the real engine: a child computing one piece of a pass,
and the reduce that combines the pieces and runs the strategy to its end.

Both run the strategy itself (the same `aggregate` as the single plan) with `FanoutPasses`:
passes already mapped are combined from stored pieces, so a strategy with several passes
(Krum: distances, then the mean of the picked clients; DP: norms, then the clipped sum) is
driven pass by pass: reduce -> NeedPass -> map the pieces -> reduce again -> ... -> result.
Nothing but the pieces' bytes crosses between tasks, and the combine is the single plan's, so
`single` and `fanout` give the same bytes (tests/unit/aggregation/test_agg_fanout.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fma.domain.aggregation import AggregationResult, UpdateInput, aggregate
from fma.domain.aggregation.engine import EngineOptions
from fma.domain.aggregation.passes import FanoutPasses, NeedPass, Partitioning, PieceDone
from fma.domain.codec import decode, encode

PIECE_META = "fma.piece"


@dataclass(frozen=True)
class RoundInputs:
    """Everything `aggregate` takes for one round; the same for every task of the round."""

    strategy: str
    params: Mapping[str, object]
    global_model: Mapping[str, np.ndarray]
    updates: Sequence[UpdateInput]
    state: Mapping[str, np.ndarray]
    round_number: int
    seed: int = 0
    noise_seed: object = None
    options: EngineOptions | None = None
    partitioning: Partitioning = field(default_factory=Partitioning)

    def run(self, passes: FanoutPasses | None, *, noise: bool = True) -> AggregationResult:
        return aggregate(self.strategy, self.params, self.global_model, self.updates, self.state,
                         round_number=self.round_number, seed=self.seed,
                         noise_seed=self.noise_seed if noise else None, options=self.options,
                         partitioning=self.partitioning, passes=passes)


@dataclass(frozen=True)
class Piece:
    """One computed piece: its value and what its object records (clients, range, reads)."""

    pass_index: int
    piece: int
    kind: str
    value: np.ndarray
    facts: dict[str, Any]


Loader = Callable[[int, int], np.ndarray]


def compute_piece(inputs: RoundInputs, load: Loader, pass_index: int, piece: int) -> Piece:
    """Child task: run the strategy up to pass `pass_index` (earlier passes from `load`) and
    compute piece `piece` of it. The DP noise seed is never handed to a child: noise is added
    after every pass, in the reduce."""
    try:
        inputs.run(FanoutPasses(load, pass_index, target=(pass_index, piece)), noise=False)
    except PieceDone as done:
        return Piece(pass_index, piece, done.kind, done.value, done.facts)
    raise ValueError(f"the strategy finished before pass {pass_index}: the plan does not match it")


def reduce(inputs: RoundInputs, load: Loader, complete: int) -> AggregationResult | NeedPass:
    """Reduce task: the result when passes [0, complete) are all there is, else the next
    pass to map (its index, kind and number of pieces)."""
    try:
        return inputs.run(FanoutPasses(load, complete))
    except NeedPass as need:
        if need.index != complete:
            raise ValueError(f"reduce asked for pass {need.index} with {complete} complete") from None
        return need


def encode_piece(piece: Piece) -> bytes:
    """A piece object: its value as safetensors, its facts in the metadata (JSON)."""
    facts = {"pass": piece.pass_index, "piece": piece.piece, "kind": piece.kind, **piece.facts}
    return encode({"value": np.ascontiguousarray(piece.value)},
                  {PIECE_META: json.dumps(facts, sort_keys=True, default=float)})


def decode_piece(data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
    """The value (a fresh writable array) and facts of a piece object."""
    tensors, meta = decode(data)
    return np.array(tensors["value"]), json.loads(meta.get(PIECE_META, "{}"))


def run_in_process(inputs: RoundInputs, store: dict[tuple[int, int], bytes] | None = None,
                   on_piece: Callable[[Piece], None] | None = None) -> AggregationResult:
    """The whole fanout plan in this process, every piece through its encoded object: what
    the executors do, minus the workers (tests and the benchmark use it)."""
    pieces = {} if store is None else store

    def load(p: int, i: int) -> np.ndarray:
        return decode_piece(pieces[(p, i)])[0]

    complete = 0
    while True:
        out = reduce(inputs, load, complete)
        if isinstance(out, AggregationResult):
            return out
        for i in range(out.npieces):
            piece = compute_piece(replace(inputs), load, out.index, i)
            pieces[(out.index, i)] = encode_piece(piece)
            if on_piece is not None:
                on_piece(piece)
        complete = out.index + 1
