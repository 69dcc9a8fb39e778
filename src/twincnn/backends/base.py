"""What every backend's Trainer shares, so a backend writes only what differs from the others."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Callable

import numpy as np

from .interface import Hooks, TrainerConfig
from .loop import run_epochs

_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(TrainerConfig))


class BaseTrainer:
    """The validated config, the shared epoch loop and predictions from the current weights.

    A backend's Trainer sets ``predict_logits`` (its module's ``predict(model, x)``), calls
    ``super().__init__`` before building its optimiser, and writes set_data, step, train_epoch and sync;
    it overrides run() only where its users' own loop is not the shared one (Keras's fit).
    """

    predict_logits: Callable[..., np.ndarray]

    def __init__(self, model, spec, config: TrainerConfig, metrics=()):
        self.model, self.spec, self.config = model, spec, config
        self.variant, self.seed = config.variant, config.seed
        self.metrics = tuple(metrics)  # what Keras's compile() computes; a plain loop computes none

    @classmethod
    def from_options(cls, model, spec, **kwargs):
        """make_trainer(): TrainerConfig's fields (lr, adam, eps, variant, device, seed) are checked there, once;
        the rest (metrics, a backend's own options) go to the Trainer."""
        config = TrainerConfig(**{k: v for k, v in kwargs.items() if k in _CONFIG_FIELDS})
        return cls(model, spec, config, **{k: v for k, v in kwargs.items() if k not in _CONFIG_FIELDS})

    def run(self, epochs, batch_size, order_for_epoch, hooks: Hooks, validation=None) -> None:
        run_epochs(self, epochs, batch_size, order_for_epoch, hooks, validation)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.sync()
        return type(self).predict_logits(self.model, x)


@contextmanager
def attributes_set(objects, name: str, value):
    """Each object's attribute ``name`` set to ``value`` inside, back to its own value afterwards."""
    before = [(obj, getattr(obj, name)) for obj in objects]
    for obj, _ in before:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, old in before:
            setattr(obj, name, old)
