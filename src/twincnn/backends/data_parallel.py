"""What every data-parallel twin (backends/NAME_parallel.py) shares: the slice a rank trains on and the epoch
loop over the shared order."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def rank_slice(idx, world: int, rank: int) -> np.ndarray:
    """This rank's equal part of the global batch ``idx`` (parallel.launch refuses batches R does not divide)."""
    return np.array_split(np.asarray(idx), world)[rank]


def global_steps(trainer, order, batch_size: int, on_step=None) -> list:
    """trainer.step on every global batch of ``order``; the steps' losses, not waited for."""
    if order is None:
        raise UserError("data-parallel twins train on the shared batch order: use the fair protocol")
    losses = []
    for start in range(0, len(order), batch_size):
        losses.append(trainer.step(order[start:start + batch_size]))
        if on_step is not None:
            on_step(len(losses))
    return losses
