"""PyTorch's KerasAdam against keras.optimizers.Adam itself: many steps on fixed, varied gradients.

One Adam step cannot see wrong betas: at t=1 the bias correction cancels them
(m/(1-b1) = g, v/(1-b2) = g^2). Twelve steps with gradients whose scale jumps from 1e-8 to 10 can:
beta_1 and beta_2 set how much each past gradient still counts, and epsilon decides the step wherever
a gradient stays near 1e-7.
"""

import numpy as np
import pytest

from tests.helpers import ADAM_ATOL, assert_close, run_keras, run_keras_adam_in_torch, start_and_gradients

pytestmark = [pytest.mark.tensorflow, pytest.mark.torch, pytest.mark.both, pytest.mark.equivalence]

@pytest.mark.parametrize("capturable", [False, True], ids=["host-step", "device-step"])
def test_keras_adam_matches_keras_over_twelve_steps(tf_and_torch, capturable):
    tfb, tb = tf_and_torch
    start, steps = start_and_gradients()
    expected = run_keras(tfb.keras, tfb.tf, start, steps)
    got = run_keras_adam_in_torch(tb, start, steps, capturable)
    moved = max(np.abs(expected[k] - w).max() for k, w in zip(expected, start))
    assert moved > 100 * ADAM_ATOL, f"weights moved only {moved:.3g}: the comparison would prove nothing"
    m = assert_close(got, expected, ADAM_ATOL, f"KerasAdam vs keras.optimizers.Adam, {len(steps)} steps")
    print(f"worst mismatch after {len(steps)} steps ({'capturable' if capturable else 'host step'}): {m}")
