"""Training-trajectory equivalence: how far two twins drift apart on identical batches (trajectory, then drift)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import Spec
from .weights import Mismatch, initial_weights, worst_mismatch


def relative_distance(a: dict, b: dict) -> float:
    """||a - b|| / ||a|| over all weights together."""
    num = sum(float(((a[k].astype(np.float64) - b[k]) ** 2).sum()) for k in a)
    den = sum(float((a[k].astype(np.float64) ** 2).sum()) for k in a)
    return float(np.sqrt(num / den))


@dataclass
class Drift:
    step: int
    worst: Mismatch
    relative: float


def trajectory(backend, spec: Spec, x, y, steps=50, batch_size=64, lr=1e-3, adam="keras", seed=0,
               nudge=False) -> list[dict]:
    """The canonical weights after each of ``steps`` training steps of ``backend``'s tuned twin, from
    initial_weights(spec, seed) on batches drawn by ``seed``: every twin given the same arguments sees the same
    start and the same batches.

    adam='keras' gives PyTorch Keras's Adam update (twincnn's fair protocol);
    adam='native' leaves each framework its stock Adam (Keras eps 1e-7 vs PyTorch eps 1e-8, other formula).
    nudge=True starts from kernels one float32 ulp up: against the same twin without it, this measures how fast
    training itself amplifies a rounding difference -- the floor any cross-framework drift sits on.
    """
    start = initial_weights(spec, seed)
    if nudge:
        start = {k: np.nextafter(v, np.float32(np.inf)) if k.endswith("/kernel") else v for k, v in start.items()}
    model = backend.build(spec, seed=seed)
    backend.set_weights(model, spec, start)
    trainer = backend.make_trainer(model, spec, lr=lr, adam=adam, variant="tuned")
    trainer.set_data(x, y)
    order = np.random.default_rng(seed).permutation(len(x))
    weights = []
    for i in range(steps):
        trainer.step(order[(i * batch_size) % len(x):][:batch_size])
        trainer.sync()  # a twin may hold the newest weights in its step's state until then
        weights.append(backend.get_weights(model, spec))
    return weights


def drift(reference: list[dict], other: list[dict]) -> list[Drift]:
    """Step by step, how far ``other``'s weights are from ``reference``'s (two trajectories of equal length)."""
    assert len(reference) == len(other), f"trajectories of {len(reference)} and {len(other)} steps"
    return [Drift(step, worst_mismatch(b, a), relative_distance(a, b))
            for step, (a, b) in enumerate(zip(reference, other), start=1)]
