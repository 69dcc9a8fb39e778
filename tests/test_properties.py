"""Property: for any valid spec, batch size and input, transferred weights give equal logits in every pair.

Default run: the derandomized 'ci' profile (60 examples, well under a minute).
Longer local search: HYPOTHESIS_PROFILE=thorough pytest tests/test_properties.py
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.helpers import LOGIT_ATOL  # noqa: E402
from twincnn.spec import FLATTEN, Spec, SpecError, conv, dense, pool  # noqa: E402
from twincnn.weights import random_weights, worst_mismatch  # noqa: E402


@st.composite
def specs(draw):
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        layers.append(conv(draw(st.integers(1, 16)), draw(st.integers(1, 5)), draw(st.integers(1, 2)),
                           draw(st.sampled_from(["valid", "same"])), draw(st.sampled_from(["relu", None]))))
        if draw(st.booleans()):
            layers.append(pool(draw(st.integers(2, 3))))
    layers.append(FLATTEN)
    if draw(st.booleans()):
        layers.append(dense(draw(st.integers(1, 32)), "relu"))
    layers.append(dense(10))
    try:
        return Spec((28, 28, 1), tuple(layers))
    except SpecError:
        assume(False)  # e.g. a stack that shrinks the image to nothing: not a valid spec


@given(spec=specs(), batch=st.integers(1, 32), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([0.5, 1.0, 3.0]), shift=st.sampled_from([0.0, -0.5, 1.0]))
def test_transferred_logits_are_equal(pair, spec, batch, seed, scale, shift):
    a, b = pair
    weights = random_weights(spec, seed)
    model_a, model_b = a.build(spec), b.build(spec)
    a.set_weights(model_a, spec, weights)
    b.set_weights(model_b, spec, weights)
    # values outside [0, 1] on purpose: negative pixels and large ones
    x = (np.random.default_rng(seed).random((batch, 28, 28, 1)) * scale + shift).astype(np.float32)
    logits_a, logits_b = a.predict(model_a, x), b.predict(model_b, x)
    assert logits_a.shape == logits_b.shape == (batch, 10)
    tolerance = LOGIT_ATOL * max(1.0, float(np.abs(logits_a).max()))  # float32 error grows with the logits' size
    m = worst_mismatch(logits_b, logits_a)
    assert m.max_abs <= tolerance, (f"{b.NAME} vs {a.NAME}, spec {spec.describe()}\n"
                                    f"batch {batch}: {m} exceeds {tolerance:.3g}")
