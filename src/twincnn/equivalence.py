"""Training-trajectory equivalence: how far two twins drift apart on identical batches."""

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


def trajectory_drift(src, dst, spec: Spec, x, y, steps=50, batch_size=64, lr=1e-3, adam="keras", seed=0,
                     nudge=False) -> list[Drift]:
    """Train two twins from the same weights on identical batches; their distance after each step.

    adam='keras' gives PyTorch Keras's Adam update (twincnn's fair protocol);
    adam='native' leaves each framework its stock Adam (Keras eps 1e-7 vs PyTorch eps 1e-8, other formula).
    nudge=True moves dst's kernels up by one float32 ulp: with src == dst this measures how fast
    training itself amplifies a rounding difference -- the floor any cross-framework drift sits on.
    """
    start = initial_weights(spec, seed)
    nudged = {k: np.nextafter(v, np.float32(np.inf)) if k.endswith("/kernel") and nudge else v
              for k, v in start.items()}
    runs = []
    for backend, weights in ((src, start), (dst, nudged)):
        model = backend.build(spec, seed=seed)
        backend.set_weights(model, spec, weights)
        trainer = backend.make_trainer(model, spec, lr=lr, adam=adam, variant="tuned")
        trainer.set_data(x, y)
        runs.append((backend, model, trainer))
    order = np.random.default_rng(seed).permutation(len(x))
    drift = []
    for i in range(steps):
        idx = order[(i * batch_size) % len(x):][:batch_size]
        for _, _, trainer in runs:
            trainer.step(idx)
        (a, ma, _), (b, mb, _) = runs
        wa, wb = a.get_weights(ma, spec), b.get_weights(mb, spec)
        drift.append(Drift(i + 1, worst_mismatch(wb, wa), relative_distance(wa, wb)))
    return drift
