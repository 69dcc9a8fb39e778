"""Keras -> canonical -> PyTorch weight transfer: bit-exact round trips, equal logits, equal gradients."""

import numpy as np
import pytest

from tests.helpers import GRAD_ATOL, LOGIT_ATOL, assert_close, assert_same_argmax
from twincnn.weights import initial_weights, random_weights, worst_mismatch

SEEDS = [0, 1, 2]


def transferred(both, spec, seed):
    """A Keras model with its own Glorot init plus random non-zero biases, and its PyTorch twin."""
    tfb, tb = both
    keras_model = tfb.build(spec, seed=seed)
    weights = tfb.get_weights(keras_model, spec)
    rng = np.random.default_rng(seed)
    for name in weights:
        if name.endswith("/bias"):  # zero biases would hide a bias that is not transferred
            weights[name] = rng.uniform(-0.3, 0.3, weights[name].shape).astype(np.float32)
    tfb.set_weights(keras_model, spec, weights)
    torch_model = tb.build(spec, seed=seed + 100)  # its own, different init, overwritten below
    tb.set_weights(torch_model, spec, tfb.get_weights(keras_model, spec))
    return keras_model, torch_model


@pytest.mark.parametrize("seed", SEEDS)
def test_round_trip_is_bit_exact(both, spec, seed):
    tfb, tb = both
    keras_model, torch_model = transferred(both, spec, seed)
    original = tfb.get_weights(keras_model, spec)
    back = tfb.build(spec, seed=seed + 7)
    tfb.set_weights(back, spec, tb.get_weights(torch_model, spec))
    for name, value in tfb.get_weights(back, spec).items():
        assert np.array_equal(value, original[name]), f"{name}: {worst_mismatch(value, original[name], name)}"


def test_layouts_really_differ(both, spec):
    """The transfer is not trivial: PyTorch stores conv kernels OIHW and fc1 rows in (C, H, W) order."""
    _, tb = both
    model = tb.build(spec, seed=0)
    w = random_weights(spec, 3)
    tb.set_weights(model, spec, w)
    assert tuple(model.conv1.weight.shape) == (28, 1, 3, 3)
    # canonical fc1 row for (h=0, w=1, c=0) is row 1*64 = 64; in PyTorch it is input column 0*9 + 1 = 1
    assert np.array_equal(model.fc1.weight.detach().numpy()[:, 1], w["fc1/kernel"][64])


@pytest.mark.parametrize("seed", SEEDS)
def test_logits_equal_on_all_mnist_test_images(both, spec, mnist, seed):
    tfb, tb = both
    keras_model, torch_model = transferred(both, spec, seed)
    x = mnist.images("test")
    a, b = tfb.predict(keras_model, x), tb.predict(torch_model, x)
    assert a.shape == b.shape == (10_000, 10)
    assert_close(b, a, LOGIT_ATOL, f"logits on 10,000 test images, seed {seed}")
    assert_same_argmax(b, a, f"seed {seed}")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_logits_equal_on_random_inputs(both, spec, seed, scale):
    """Inputs outside [0, 1] too: negative and large values exercise every ReLU branch."""
    tfb, tb = both
    keras_model, torch_model = transferred(both, spec, seed)
    x = (np.random.default_rng(seed).standard_normal((256, 28, 28, 1)) * scale).astype(np.float32)
    a, b = tfb.predict(keras_model, x), tb.predict(torch_model, x)
    assert_close(b, a, LOGIT_ATOL * scale, f"logits on N(0, {scale}^2) inputs, seed {seed}")
    assert_same_argmax(b, a, f"seed {seed}")


@pytest.mark.parametrize("seed", SEEDS)
def test_gradients_equal_per_parameter(both, spec, mnist, seed):
    tfb, tb = both
    keras_model, torch_model = transferred(both, spec, seed)
    idx = np.random.default_rng(seed).choice(len(mnist.y_train), 64, replace=False)
    x, y = mnist.images("train")[idx], mnist.labels("train")[idx]
    loss_a, grads_a = tfb.loss_and_grads(keras_model, spec, x, y)
    loss_b, grads_b = tb.loss_and_grads(torch_model, spec, x, y)
    assert abs(loss_a - loss_b) <= LOGIT_ATOL, f"loss {loss_a} vs {loss_b}"
    assert list(grads_a) == list(grads_b) == list(spec.weight_shapes())
    for name in grads_a:
        assert np.abs(grads_a[name]).max() > 0, f"{name}: zero gradient proves nothing"
        assert_close(grads_b[name], grads_a[name], GRAD_ATOL, f"gradient of {name}, seed {seed}")


def test_shared_initial_weights_are_keras_style(spec):
    w = initial_weights(spec, 42)
    assert all(not v.any() for k, v in w.items() if k.endswith("/bias"))
    limit = np.sqrt(6 / (576 + 64))
    assert np.abs(w["fc1/kernel"]).max() <= limit and np.abs(w["fc1/kernel"]).max() > 0.9 * limit
    assert np.array_equal(w["conv2/kernel"], initial_weights(spec, 42)["conv2/kernel"])
