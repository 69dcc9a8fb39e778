"""check's gradient tolerance on networks that rounding alone moves: widened to twice how far A's own gradients
move under a one-ulp change of its inputs, only where they differ beyond the stated one, and said. Framework-free:
the two models are stand-ins whose gradients are made up."""

import contextlib

import numpy as np

from twincnn import reference
from twincnn.check import GRAD_RTOL, ROUNDING_FACTOR, compare_numerics
from twincnn.spec import FLATTEN, Spec, dense

SPEC = Spec(input_shape=(2, 2, 1), layers=(FLATTEN, dense(3)))


X = np.random.default_rng(0).uniform(0.1, 1, (64, 2, 2, 1)).astype(np.float32)


class Stand:
    """A read model whose gradient is 1 everywhere, plus ``jump`` where its input holds a value X lacks (its inputs
    sit at a kink: a one-ulp change moves the gradient by ``jump``), plus ``offset``."""

    def __init__(self, jump=0.0, offset=0.0):
        self.spec, self.jump, self.offset = SPEC, jump, offset
        self.weights = {k: np.full(s, 0.1, np.float32) for k, s in SPEC.weight_shapes().items()}

    def get_weights(self):
        return {k: v.copy() for k, v in self.weights.items()}

    def set_weights(self, weights):
        self.weights = {k: np.array(v, np.float32) for k, v in weights.items()}

    def predict(self, x):
        return reference.forward(self.spec, self.weights, x)

    def without_dropout(self):
        return contextlib.nullcontext()  # the spec has none

    def loss_and_grads(self, x, y):
        moved = 0.0 if np.isin(x, X).all() else self.jump
        return 1.0, {k: np.full(s, 1.0 + moved + self.offset, np.float32)
                     for k, s in SPEC.trainable_weight_shapes().items()}


def numerics(a, b):
    found, _ = compare_numerics(a, b, X, np.zeros(len(X), np.int64))
    return {c.what.split(" (")[0]: c for c in found}


def test_a_difference_within_a_own_rounding_passes_and_the_table_says_why():
    found = numerics(Stand(jump=0.5), Stand(offset=0.3))
    gradients = found["gradients"]
    assert gradients.ok and gradients.tolerance == ROUNDING_FACTOR * 0.5
    assert "tolerance 2x how far A's own move when its inputs move by one ulp" in gradients.what


def test_a_difference_beyond_a_own_rounding_fails():
    gradients = numerics(Stand(jump=0.5), Stand(offset=3.0))["gradients"]
    assert not gradients.ok and gradients.worst.max_abs == 3.0


def test_a_network_rounding_does_not_move_keeps_the_stated_tolerance():
    gradients = numerics(Stand(jump=0.0), Stand(offset=0.3))["gradients"]
    assert not gradients.ok and gradients.tolerance == GRAD_RTOL and "ulp" not in gradients.what
