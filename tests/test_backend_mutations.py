"""Hand-made mutations of the backends: each must be caught by the equivalence check that guards it.

mutmut covers the framework-free core (spec, weights, data); the backends need both frameworks, so here a
few deliberate bugs of the kind a refactor introduces are applied with monkeypatch, and the check that
should notice each one is called directly. A check that still passes under its mutation is blind.
"""

import functools

import numpy as np
import pytest

from tests.helpers import (ADAM_ATOL, assert_close, assert_twins_agree, require, run_keras, run_keras_adam_in_optax,
                           run_keras_adam_in_torch, start_and_gradients)
from twincnn import spec as spec_module
from twincnn.spec import DEFAULT_SPEC, FLATTEN, Spec, batchnorm, conv, dense, pool
from twincnn.weights import random_weights

def check_transfer(reference, twin, spec, seed=0):
    """The transfer check: the same canonical weights give the same logits in both twins (stated tolerance)."""
    x = np.random.default_rng(seed).standard_normal((16, *spec.input_shape)).astype(np.float32)
    return assert_twins_agree((reference, twin), spec, x, weights=random_weights(spec, seed))


def check_adam(tfb, run_twin_adam):
    """The optimizer check: a twin's Keras Adam against keras.optimizers.Adam over twelve varied steps."""
    start, steps = start_and_gradients()
    expected = run_keras(tfb.keras, tfb.tf, start, steps)
    return assert_close(run_twin_adam(start, steps), expected, ADAM_ATOL, "Keras's Adam in a twin vs Keras's own")


def assert_caught(check, *args):
    with pytest.raises(AssertionError) as caught:
        check(*args)
    print(f"caught: {str(caught.value).splitlines()[0]}")


# 'same' padding with an odd total (stride 2 on 28 pixels: 1 pixel) is where the side matters.
ODD_SAME = Spec((28, 28, 1), (conv(4, 3, 2, "same"), pool(), FLATTEN, dense(10)))


# -- the layout conversion --------------------------------------------------------------------------------
def test_conv_kernel_transposed_wrongly_is_caught(tf_and_torch, monkeypatch):
    tfb, tb = tf_and_torch
    check_transfer(tfb, tb, DEFAULT_SPEC)  # the unmutated twins pass
    original = tb._to_torch

    def swapped_height_and_width(info, key, array):  # HWIO -> OIWH instead of OIHW
        if info.type == "conv2d" and key == "kernel":
            return array.transpose(3, 2, 1, 0)
        return original(info, key, array)

    monkeypatch.setattr(tb, "_to_torch", swapped_height_and_width)
    assert_caught(check_transfer, tfb, tb, DEFAULT_SPEC)


def test_missing_flatten_permutation_is_caught(tf_and_torch, monkeypatch):
    tfb, tb = tf_and_torch
    original = tb._to_torch

    def no_flatten_reorder(info, key, array):  # fc1's rows left in (H, W, C) order for a (C, H, W) flatten
        if info.flatten_from is not None and key == "kernel":
            return array.T
        return original(info, key, array)

    monkeypatch.setattr(tb, "_to_torch", no_flatten_reorder)
    assert_caught(check_transfer, tfb, tb, DEFAULT_SPEC)


@pytest.mark.parametrize("names", [("tensorflow", "torch"), ("tensorflow", "jax")])
def test_same_padding_on_the_wrong_side_is_caught(names, monkeypatch):
    keras_twin, twin = (require(name) for name in names)  # Keras pads with its own 'same'; the other, the spec's
    check_transfer(keras_twin, twin, ODD_SAME)

    original = spec_module.same_padding

    def extra_pixel_before(size, kernel, stride):  # the odd pixel first, where Keras puts it last
        before, after = original(size, kernel, stride)
        return after, before

    monkeypatch.setattr(spec_module, "same_padding", extra_pixel_before)
    mutated = Spec(ODD_SAME.input_shape, ODD_SAME.layers)  # the spec's padding is worked out when it is built
    assert mutated.info[0].padding == ((1, 0), (1, 0))
    assert_caught(check_transfer, keras_twin, twin, mutated)


# -- the optimizer -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [{"betas": (0.999, 0.9)}, {"eps": 1e-8}, {"eps": 1e-6}],
                         ids=["swapped-betas", "eps-1e-8", "eps-1e-6"])
def test_wrong_adam_constants_are_caught(tf_and_torch, monkeypatch, change):
    tfb, tb = tf_and_torch
    in_torch = functools.partial(run_keras_adam_in_torch, tb)
    check_adam(tfb, in_torch)
    original_init = tb.KerasAdam.__init__

    def mutated_init(self, params, **kwargs):
        original_init(self, params, **{**kwargs, **change})

    monkeypatch.setattr(tb.KerasAdam, "__init__", mutated_init)
    assert_caught(check_adam, tfb, in_torch)


# -- the same mutations of the JAX twin ---------------------------------------------------------------------
BN_SPEC = Spec((8, 8, 2), (conv(4, 3, 1, "same"), batchnorm(), FLATTEN, dense(10)))


def test_jax_batchnorm_scale_and_bias_swapped_is_caught(tf_and_jax, monkeypatch):
    tfb, jb = tf_and_jax
    check_transfer(tfb, jb, BN_SPEC)
    monkeypatch.setattr(jb, "_FLAX_NAMES", {**jb._FLAX_NAMES, "gamma": "bias", "beta": "scale"})
    assert_caught(check_transfer, tfb, jb, BN_SPEC)


def test_jax_conv_kernel_transposed_wrongly_is_caught(tf_and_jax, monkeypatch):
    tfb, jb = tf_and_jax
    original = jb.set_weights

    def height_and_width_swapped(model, spec, weights):
        swapped = {k: v.transpose(1, 0, 2, 3) if k.endswith("/kernel") and v.ndim == 4 else v
                   for k, v in weights.items()}
        original(model, spec, swapped)

    monkeypatch.setattr(jb, "set_weights", height_and_width_swapped)
    assert_caught(check_transfer, tfb, jb, DEFAULT_SPEC)


@pytest.mark.parametrize("change", [{"b1": 0.999, "b2": 0.9}, {"eps": 1e-8}, {"eps": 1e-6}],
                         ids=["swapped-betas", "eps-1e-8", "eps-1e-6"])
def test_wrong_jax_adam_constants_are_caught(tf_and_jax, monkeypatch, change):
    tfb, jb = tf_and_jax
    in_optax = functools.partial(run_keras_adam_in_optax, jb)
    check_adam(tfb, in_optax)
    original = jb.keras_adam
    monkeypatch.setattr(jb, "keras_adam", lambda learning_rate, **kwargs: original(learning_rate, **{**kwargs, **change}))
    assert_caught(check_adam, tfb, in_optax)
