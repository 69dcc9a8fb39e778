"""The order in which worker processes train their epochs: interleaved, and balanced where the verdict looks.

The verdict uses the steady-state epochs (2..E) of every repeat, so those are balanced: the k-th steady
epoch of the whole run (counting on through the repeats) runs the workers in row k of a Williams Latin
square. Over a whole cycle of rows every worker runs in every position equally often, and every worker
directly follows every other equally often, so neither going first nor running after a given framework
(its caches, its thread pools winding down) favours anyone. A cycle is W rows for an even number of
workers W and 2W for an odd one. The first epoch (warm-up, not judged) runs in the order of the epoch after
it, so no worker runs two epochs back to back across that boundary.

A slowdown that grows through the run adds alike to workers that alternate positions, and the paired log
ratios cancel it instead of reading it as a difference between frameworks.
"""

from __future__ import annotations


def williams_rows(workers: int) -> list[list[int]]:
    """A Williams design for ``workers`` treatments: rows are orders, balanced for position and for
    which worker directly precedes which."""
    first, low, high = [0], 1, workers - 1
    while len(first) < workers:  # 0, 1, n-1, 2, n-2, ...
        first.append(low)
        low += 1
        if len(first) < workers:
            first.append(high)
            high -= 1
    rows = [[(v + shift) % workers for v in first] for shift in range(workers)]
    return rows if workers % 2 == 0 else rows + [row[::-1] for row in rows]


def interleaved(workers: int, epochs: int, repeat: int = 0) -> list[tuple[int, int]]:
    """[(epoch, worker index), ...] for one repeat, in the order they run."""
    rows = williams_rows(workers)
    steady = max(epochs - 1, 1)  # steady-state epochs per repeat (a one-epoch run judges its only one)
    order = []
    for epoch in range(1, epochs + 1):
        k = repeat * steady + max(epoch - 2, 0)  # epoch 1 takes epoch 2's row
        order += [(epoch, slot) for slot in rows[k % len(rows)]]
    return order


def sequential(workers: int, epochs: int) -> list[tuple[int, int]]:
    """Every epoch of worker 0, then every epoch of worker 1, ...: what a one-process run does."""
    return [(epoch, slot) for slot in range(workers) for epoch in range(1, epochs + 1)]
