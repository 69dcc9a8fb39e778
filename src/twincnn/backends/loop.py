"""The epoch loop every trainer shares, unless its framework's own loop is what users write (Keras fit)."""

from __future__ import annotations

from .interface import Hooks


def run_epochs(trainer, epochs, batch_size, order_for_epoch, hooks: Hooks, validation=None) -> None:
    """Train ``epochs`` epochs; ``hooks`` decide when each starts and see each step and end.

    hooks.epoch_start(epoch) may block (the scheduler runs one framework at a time) and starts the
    clock when it returns; hooks.epoch_end(epoch, train_loss) stops it, after the device has finished.
    order_for_epoch(epoch) gives the row order (None: the framework shuffles itself); it is computed
    before the clock starts.
    """
    for epoch in range(1, epochs + 1):
        order = order_for_epoch(epoch)
        hooks.epoch_start(epoch)
        loss = trainer.train_epoch(order, batch_size, hooks.step, validation)
        trainer.sync()
        hooks.epoch_end(epoch, loss)
