"""The order in which worker processes train: interleaved block by block, balanced where the verdict looks.

A block is a run of consecutive training steps inside one epoch (``block_ends``); with one block per
epoch a block is the epoch. Workers take turns one block at a time, so the k-th block of every worker
ran within seconds of the others' k-th blocks and the pair is one paired measurement.

The verdict pairs the steady-state blocks of every repeat (``judged``): every block but the repeat's
first, which carries warm-up (tracing, compilation, first allocations), and the first epoch's last, which
carries the first short final batch (a new shape, which a JIT framework compiles). Those are balanced:
the k-th judged block of the whole run (counting on through the repeats) runs the workers in row k of a
Williams Latin square. Over a whole cycle of rows every worker runs in every position equally often,
and every worker directly follows every other equally often, so neither going first nor running after a
given framework (its caches, its thread pools winding down) favours anyone. A cycle is W rows for an even
number of workers W and 2W for an odd one. A block that is not judged runs in the order of the next
judged one (the last judged one's where none follows), so no worker runs two blocks back to back into a
judged block.

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


def judged(epochs: int, blocks: int) -> list[tuple[int, int]]:
    """The (epoch, block) pairs, counting from 1, that the verdict pairs in each repeat, in running order.
    A run too short to have any (one epoch of one or two blocks) judges every block, warm-up included."""
    every = [(epoch, block) for epoch in range(1, epochs + 1) for block in range(1, blocks + 1)]
    return [(epoch, block) for epoch, block in every if epoch > 1 or 1 < block < blocks] or every


def judged_text(epochs: int, blocks: int) -> str:
    """What ``judged`` keeps, for a verdict line: '1 (blocks 2-8)', '2..3', '1 (warm-up incl.)'."""
    kept = judged(epochs, blocks)
    first_epoch = [block for epoch, block in kept if epoch == 1]
    if len(kept) == epochs * blocks:  # only a one-epoch run keeps every block
        return "1 (warm-up incl.)"
    later = "" if epochs == 1 else (f"{epochs}" if epochs == 2 else f"2..{epochs}")
    if not first_epoch:
        return later
    part = f"blocks {first_epoch[0]}-{first_epoch[-1]}" if len(first_epoch) > 1 else f"block {first_epoch[0]}"
    return f"1 ({part})" + (f", {later}" if later else "")


def interleaved(workers: int, epochs: int, repeat: int = 0, blocks: int = 1) -> list[tuple[int, int, int]]:
    """[(epoch, block, worker index), ...] for one repeat, in the order they run; blocks count from 1."""
    rows = williams_rows(workers)
    kept = judged(epochs, blocks)
    order, seen = [], 0  # seen: judged blocks already run in this repeat
    for epoch in range(1, epochs + 1):
        for block in range(1, blocks + 1):
            k = repeat * len(kept) + min(seen, len(kept) - 1)  # an unjudged block: the next judged one's row
            order += [(epoch, block, slot) for slot in rows[k % len(rows)]]
            seen += (epoch, block) in kept
    return order


def sequential(workers: int, epochs: int, blocks: int = 1) -> list[tuple[int, int, int]]:
    """Every block of worker 0, then every block of worker 1, ...: what a one-process run does."""
    return [(epoch, block, slot) for slot in range(workers) for epoch in range(1, epochs + 1)
            for block in range(1, blocks + 1)]
