"""Property: for any valid spec (every layer type), batch size and input, every twin holding the canonical
weights gives the logits (inference mode) of the NumPy reference forward pass on them, so any two twins
holding the same weights agree to twice the tolerance.

Default run: the derandomized 'ci' profile (30 examples per framework), at this machine's instruction set only:
at lower sets every layer type's numbers are checked by test_layers.py's fixed cases.
Longer local search: HYPOTHESIS_PROFILE=thorough pytest tests/test_properties.py
"""

import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.helpers import assert_twin_matches_reference, require  # noqa: E402
from twincnn import backends  # noqa: E402
from twincnn.spec import (FLATTEN, GLOBAL_AVG_POOL, Spec, SpecError, batchnorm, conv, dense, depthwise,  # noqa: E402
                          dropout, layernorm)
from twincnn.weights import random_weights  # noqa: E402



ACTIVATIONS = st.sampled_from([None, "relu", "sigmoid", "tanh", "elu", "silu", "gelu", "gelu_tanh", "leaky_relu"])
PADDING = st.sampled_from(["valid", "same"])


def activated(draw, layer):
    """The layer with a drawn activation (and, for leaky_relu, sometimes its own slope)."""
    activation = draw(ACTIVATIONS)
    layer = {**layer, "activation": activation}
    if activation == "leaky_relu" and draw(st.booleans()):
        layer["negative_slope"] = draw(st.sampled_from([0.0, 0.01, 0.2]))
    return layer


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def specs(draw):
    """Every layer type, in small sizes: the 'ci' profile runs 30 of these for each twin."""
    layers, channels = [], 1
    for _ in range(draw(st.integers(1, 3))):
        filters, strides = draw(st.integers(1, 8)), draw(st.integers(1, 2))
        layer = conv(filters, draw(st.integers(1, 5)), strides, draw(PADDING))
        if strides == 1 and draw(st.booleans()):
            layer["dilation_rate"] = draw(st.integers(1, 3))
        layer["groups"] = draw(st.sampled_from(divisors(math.gcd(channels, filters))))
        layers.append(activated(draw, layer))
        channels = filters
        extra = draw(st.sampled_from([None, "depthwiseconv2d", "maxpool2d", "avgpool2d", "batchnorm", "layernorm",
                                      "dropout"]))
        if extra in ("maxpool2d", "avgpool2d"):
            layers.append({"type": extra, "pool_size": draw(st.integers(2, 3)),
                           "strides": draw(st.sampled_from([None, 1, 2])), "padding": draw(PADDING)})
        elif extra == "depthwiseconv2d":
            multiplier = draw(st.integers(1, 2))
            layers.append(activated(draw, depthwise(draw(st.integers(1, 3)), multiplier, draw(st.integers(1, 2)),
                                                    draw(PADDING))))
            channels *= multiplier
        elif extra == "batchnorm":
            layers.append(batchnorm(draw(st.sampled_from([0.9, 0.99])), draw(st.sampled_from([1e-3, 1e-5]))))
        elif extra == "layernorm":
            layers.append(layernorm(draw(st.sampled_from([1e-3, 1e-6]))))
        elif extra == "dropout":
            layers.append(dropout(draw(st.sampled_from([0.0, 0.5]))))
    layers.append(draw(st.sampled_from([FLATTEN, GLOBAL_AVG_POOL])))
    extra = draw(st.sampled_from([None, "batchnorm", "layernorm", "dropout"]))
    if extra:  # right after flatten: per-feature weights in (H, W, C) order
        layers.append({"batchnorm": batchnorm(), "layernorm": layernorm(), "dropout": dropout(0.3)}[extra])
    if draw(st.booleans()):
        layers.append(activated(draw, dense(draw(st.integers(1, 32)))))
    layers.append(dense(10))
    try:
        return Spec((28, 28, 1), tuple(layers))
    except SpecError:
        assume(False)  # e.g. a stack that shrinks the image to nothing: not a valid spec


OWN_MODEL_CODE = [name for name, entry in backends.BACKENDS.items() if not entry.runs_on]
# A twin on another framework's engine (Keras on JAX or PyTorch) builds its model with the code of a twin searched
# above (the Keras twin's, keras_twin.py): its search looks for its engine's numerics, in fewer examples.
LAYERED = [name for name, entry in backends.BACKENDS.items() if entry.runs_on]
LAYERED_EXAMPLES = 10
INPUTS = dict(spec=specs(), batch=st.integers(1, 32), seed=st.integers(0, 2**31 - 1),
              scale=st.sampled_from([0.5, 1.0, 3.0]), shift=st.sampled_from([0.0, -0.5, 1.0]))


def assert_transferred_logits_equal_the_reference(framework, spec, batch, seed, scale, shift):
    # values outside [0, 1] on purpose: negative pixels and large ones
    x = (np.random.default_rng(seed).random((batch, 28, 28, 1)) * scale + shift).astype(np.float32)
    assert_twin_matches_reference(framework, spec, x, random_weights(spec, seed),
                                  f"{framework.NAME}, spec {spec.describe()}, batch {batch}")


# the backend is a module, the same for every example: nothing for hypothesis to reset between them
@pytest.mark.parametrize("name", OWN_MODEL_CODE)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**INPUTS)
def test_transferred_logits_equal_the_reference(name, spec, batch, seed, scale, shift):
    assert_transferred_logits_equal_the_reference(require(name), spec, batch, seed, scale, shift)


@pytest.mark.slow  # as these twins' equivalence tests (conftest.py: LAYERED)
@pytest.mark.parametrize("name", LAYERED)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=LAYERED_EXAMPLES)
@given(**INPUTS)
def test_transferred_logits_on_another_engine_equal_the_reference(name, spec, batch, seed, scale, shift):
    assert_transferred_logits_equal_the_reference(require(name), spec, batch, seed, scale, shift)
