"""Async (FedBuff) against sync rounds with stragglers, on local mode with real SDK clients.

Digits over 6 non-IID clients, 2 of them 5x slower (simulated training time before the real
local SGD): sync with quota 6, sync with quota 4 and async with K=3. Prints per run the wall
time until a published model first reaches the accuracy sync quota 6 ends with, its ratio to
sync quota 6 (goal for async: <= 0.5) and the accuracy after the same number of client
updates. The same comparison as `fma demo --async` (fma/local/async_compare.py).

    make bench-async                 # 1 s / 5 s simulated training, 4 sync rounds (~1.5 min)
    make bench-async ARGS="--quick"  # 0.4 s / 2 s
"""

from __future__ import annotations

import sys

from fma.local.async_compare import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
