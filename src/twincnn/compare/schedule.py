"""The order in which worker processes train their epochs: interleaved, so drift hits every framework alike.

Within a repeat, epoch e runs the workers in the named order when e + repeat is odd and in reverse
otherwise (A1 B1 B2 A2 A3 B3 ...). A slowdown that grows linearly through the run then adds as much to
A's epochs as to B's over each pair of epochs, and the paired log ratios cancel it instead of reading it
as a difference between frameworks.
"""

from __future__ import annotations


def interleaved(workers: int, epochs: int, repeat: int = 0) -> list[tuple[int, int]]:
    """[(epoch, worker index), ...] for one repeat, in the order they run."""
    order = []
    for epoch in range(1, epochs + 1):
        slots = list(range(workers))
        if (epoch + repeat) % 2 == 0:
            slots.reverse()
        order += [(epoch, slot) for slot in slots]
    return order


def sequential(workers: int, epochs: int) -> list[tuple[int, int]]:
    """Every epoch of worker 0, then every epoch of worker 1, ...: what a one-process run does."""
    return [(epoch, slot) for slot in range(workers) for epoch in range(1, epochs + 1)]
