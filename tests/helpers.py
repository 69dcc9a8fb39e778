"""Reference comparison in the tinygrad/micrograd style: one stated tolerance, the worst element on failure."""

import numpy as np

from twincnn.weights import worst_mismatch

# Stated tolerances (float32). Why these numbers:
# - LOGIT_ATOL: both twins compute the same sums in float32 but in different orders (oneDNN vs Eigen
#   blocking); observed max |Δ| is ~3e-8 on unit-scale logits and ~1e-6 on trained logits of size ~30,
#   i.e. a few ulps. 1e-5 is ten times the worst seen and still a hundred times smaller than any
#   layout bug (a wrong flatten order or transpose gives |Δ| ~ 0.1..10).
LOGIT_ATOL = 1e-5
# - GRAD_ATOL: gradients of the mean loss on one batch are ~1e-2 in size; observed max |Δ| ~2e-8.
GRAD_ATOL = 1e-6
# - STEP_ATOL: one Adam step moves every weight by ~lr=1e-3 times m/(sqrt(v)+eps); where a gradient is
#   tiny (near eps) rounding differences are amplified, observed ~3e-7. 1e-5 is 1 % of the step size.
STEP_ATOL = 1e-5


def assert_close(actual, expected, atol, what):
    """Fail with the worst mismatch: where, both values, the difference."""
    m = worst_mismatch(actual, expected)
    assert m.max_abs <= atol, f"{what}: {m} exceeds the stated tolerance {atol:g}"
    return m


def assert_same_argmax(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    differ = np.flatnonzero(a.argmax(1) != b.argmax(1))
    assert differ.size == 0, (
        f"{what}: argmax differs on {differ.size} of {len(a)} rows; first at row {differ[0]}: "
        f"{a[differ[0]].tolist()} vs {b[differ[0]].tolist()}")
