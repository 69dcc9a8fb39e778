"""Edges of the newer layer types that test_spec_layers.py leaves open: non-square depthwise settings,
depthwise errors word for word, the smallest allowed values, booleans and infinities where a number
belongs, the layer helpers' defaults, and a depthwise kernel's random scale. Framework-free."""

import math

import pytest

from twincnn.spec import FLATTEN, Spec, SpecError, batchnorm, conv, dense, depthwise, dropout, layernorm
from twincnn.weights import random_weights


def test_depthwise_with_non_square_kernel_and_strides():
    """12x10x2, kernel 3x2, strides 2x1, multiplier 3: (12-3)//2+1 = 5 by (10-2)//1+1 = 9, 6 channels."""
    info = Spec((12, 10, 2), (depthwise((3, 2), 3, (2, 1)), FLATTEN, dense(10))).info[0]
    assert info.config == {"type": "depthwiseconv2d", "kernel_size": (3, 2), "depth_multiplier": 3,
                           "strides": (2, 1), "padding": "valid", "use_bias": True, "activation": None}
    assert info.output_shape == (5, 9, 6)
    assert info.weight_shapes == {"kernel": (3, 2, 2, 3), "bias": (6,)}


@pytest.mark.parametrize("layer,message", [
    (depthwise(0), "layer 0 (depthwiseconv2d): kernel_size must be positive, got (0, 0)"),
    (depthwise(3, strides=0), "layer 0 (depthwiseconv2d): strides must be positive, got (0, 0)"),
    (depthwise(3, strides="1"), "layer 0 (depthwiseconv2d): strides must be an int or a pair of ints, got '1'"),
    (depthwise(3, padding="full"), "layer 0 (depthwiseconv2d): padding must be 'valid', 'same', an int >= 0 or [[top, bottom], [left, right]], got 'full'"),
    (batchnorm(momentum=False), "layer 0 (batchnorm): momentum must be a number in [0, 1), got False"),
    (batchnorm(epsilon=math.inf), "layer 0 (batchnorm): epsilon must be a positive number, got inf"),
    ({**conv(2, activation="leaky_relu"), "negative_slope": math.inf},
     "layer 0 (conv2d): negative_slope must be a number >= 0, got inf"),
])
def test_error_message_word_for_word(layer, message):
    with pytest.raises(SpecError) as err:
        Spec((8, 8, 2), (layer, FLATTEN, dense(10)))
    assert str(err.value) == message


def test_smallest_allowed_values():
    spec = Spec((8, 8, 2), (batchnorm(momentum=0), {**conv(2, activation="leaky_relu"), "negative_slope": 0},
                            FLATTEN, dropout(0.25), dense(10)))
    assert spec.info[0].config["momentum"] == 0.0
    assert spec.info[1].config["negative_slope"] == 0.0
    assert spec.info[3].config == {"type": "dropout", "rate": 0.25}


def test_helpers_spell_out_the_defaults():
    assert depthwise() == {"type": "depthwiseconv2d", "kernel_size": 3, "depth_multiplier": 1, "strides": 1,
                           "padding": "valid", "activation": None}
    assert batchnorm() == {"type": "batchnorm", "momentum": 0.99, "epsilon": 1e-3}
    assert layernorm() == {"type": "layernorm", "axis": -1, "epsilon": 1e-3}


def test_random_depthwise_kernel_scales_by_its_own_window():
    """A depthwise kernel (kh, kw, in, multiplier) sees kh*kw inputs per output, not kh*kw*in."""
    spec = Spec((9, 9, 8), (depthwise(3, 100), FLATTEN, dense(10)))
    std = random_weights(spec, 0, scale=0.6)["dw1/kernel"].std()
    expected = 0.6 / 3  # scale / sqrt(3*3)
    assert abs(std - expected) < 0.05 * expected, f"std {std:.4f}, expected {expected:.4f}"
