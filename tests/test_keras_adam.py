"""PyTorch's KerasAdam against keras.optimizers.Adam itself: many steps on fixed, varied gradients.

One Adam step cannot see wrong betas: at t=1 the bias correction cancels them
(m/(1-b1) = g, v/(1-b2) = g^2). Twelve steps with gradients whose scale jumps from 1e-8 to 10 can:
beta_1 and beta_2 set how much each past gradient still counts, and epsilon decides the step wherever
a gradient stays near 1e-7.
"""

import numpy as np
import pytest

from tests.helpers import assert_close

pytestmark = [pytest.mark.tensorflow, pytest.mark.torch, pytest.mark.both, pytest.mark.equivalence]

LR = 1e-3
SHAPES = [(6, 40), (40,)]  # two tensors: the update runs over a list of parameters
# One scale per step: large, small, near Keras's epsilon (1e-7) and below it.
SCALES = [1.0, 1e-2, 10.0, 1e-7, 1.0, 3e-1, 1e-4, 5.0, 1e-8, 1.0, 2.0, 1e-3]
# Stated tolerance: weights are N(0, 1), |w| < 4, where one float32 ulp is 2.4e-7; observed max |Δ| after
# 12 steps is 1.9e-9. Swapped betas, eps 1e-8 or 1e-6, or beta_2 = 0.99 each move some weight by 2e-3 to
# 3.4e-3, a thousand times the tolerance.
ADAM_ATOL = 1e-6


def start_and_gradients(seed=0):
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    steps = []
    for scale in SCALES:
        grads = []
        for shape in SHAPES:
            g = rng.standard_normal(shape) * scale
            g.flat[::7] *= 1e-6  # some elements stay near or below epsilon at every step
            g.flat[::11] = 0.0   # and some never get a gradient
            grads.append(g.astype(np.float32))
        steps.append(grads)
    return start, steps


def run_keras(keras, tf, start, steps):
    variables = [tf.Variable(w) for w in start]
    optimizer = keras.optimizers.Adam(learning_rate=LR)  # Keras 3 defaults: 0.9, 0.999, eps 1e-7
    for grads in steps:
        optimizer.apply_gradients([(tf.constant(g), v) for g, v in zip(grads, variables)])
    return {f"w{i}": v.numpy() for i, v in enumerate(variables)}


def run_keras_adam_in_torch(tb, start, steps, capturable=False):
    import torch

    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in start]
    optimizer = tb.KerasAdam(params, lr=LR, capturable=capturable)
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g)
        optimizer.step()
    return {f"w{i}": p.detach().numpy().copy() for i, p in enumerate(params)}


@pytest.mark.parametrize("capturable", [False, True], ids=["host-step", "device-step"])
def test_keras_adam_matches_keras_over_twelve_steps(both, capturable):
    tfb, tb = both
    start, steps = start_and_gradients()
    expected = run_keras(tfb.keras, tfb.tf, start, steps)
    got = run_keras_adam_in_torch(tb, start, steps, capturable)
    moved = max(np.abs(expected[k] - w).max() for k, w in zip(expected, start))
    assert moved > 100 * ADAM_ATOL, f"weights moved only {moved:.3g}: the comparison would prove nothing"
    m = assert_close(got, expected, ADAM_ATOL, f"KerasAdam vs keras.optimizers.Adam, {len(steps)} steps")
    print(f"worst mismatch after {len(steps)} steps ({'capturable' if capturable else 'host step'}): {m}")
