"""The order in which worker processes train: interleaved block by block, balanced where the verdict looks.

A block is a run of consecutive training steps inside one epoch (``block_ends``); with one block per
epoch a block is the epoch. Workers take turns one block at a time, so the k-th block of every worker
ran within seconds of the others' k-th blocks and the pair is one paired measurement.

The verdict uses the steady-state blocks (those of epochs 2..E) of every repeat, so those are balanced:
the k-th steady block of the whole run (counting on through the repeats) runs the workers in row k of a
Williams Latin square. Over a whole cycle of rows every worker runs in every position equally often,
and every worker directly follows every other equally often, so neither going first nor running after a
given framework (its caches, its thread pools winding down) favours anyone. A cycle is W rows for an even
number of workers W and 2W for an odd one. The first epoch's blocks (warm-up, not judged) run in the order
of the first steady block, so no worker runs two blocks back to back across that boundary.

A slowdown that grows through the run adds alike to workers that alternate positions, and the paired log
ratios cancel it instead of reading it as a difference between frameworks.
"""

from __future__ import annotations


def block_ends(steps: int, block_steps: int) -> list[int]:
    """The step counts at which an epoch's blocks end: the epoch cut into equal blocks of about
    ``block_steps`` steps (0, or more steps than the epoch has: one block). Every worker of a run cuts its
    epochs alike, so block k of one pairs with block k of another."""
    blocks = max(1, round(steps / block_steps)) if block_steps > 0 else 1
    return [round(steps * (i + 1) / blocks) for i in range(blocks)]


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


def interleaved(workers: int, epochs: int, repeat: int = 0, blocks: int = 1) -> list[tuple[int, int, int]]:
    """[(epoch, block, worker index), ...] for one repeat, in the order they run; blocks count from 1."""
    rows = williams_rows(workers)
    steady = max(epochs - 1, 1) * blocks  # steady-state blocks per repeat (a one-epoch run judges its only one)
    warm_up = blocks if epochs > 1 else 0
    order = []
    for epoch in range(1, epochs + 1):
        for block in range(1, blocks + 1):
            k = repeat * steady + max((epoch - 1) * blocks + block - 1 - warm_up, 0)  # warm-up: the first row
            order += [(epoch, block, slot) for slot in rows[k % len(rows)]]
    return order


def sequential(workers: int, epochs: int, blocks: int = 1) -> list[tuple[int, int, int]]:
    """Every block of worker 0, then every block of worker 1, ...: what a one-process run does."""
    return [(epoch, block, slot) for slot in range(workers) for epoch in range(1, epochs + 1)
            for block in range(1, blocks + 1)]
