"""Weight transfer between each twin and the reference twin through the canonical layout: bit-exact round trips,
equal logits, equal gradients."""

import numpy as np
import pytest

from tests.helpers import GRAD_ATOL, LOGIT_ATOL, assert_close, assert_same_argmax
from twincnn.weights import initial_weights, random_weights, worst_mismatch

pytestmark = pytest.mark.equivalence

SEEDS = [0, 1, 2]


def transferred(pair, spec, seed):
    """Twin a with its own init plus random non-zero biases, and twin b given a's weights."""
    a, b = pair
    model_a = a.build(spec, seed=seed)
    weights = a.get_weights(model_a, spec)
    rng = np.random.default_rng(seed)
    for name in weights:
        if name.endswith("/bias"):  # zero biases would hide a bias that is not transferred
            weights[name] = rng.uniform(-0.3, 0.3, weights[name].shape).astype(np.float32)
    a.set_weights(model_a, spec, weights)
    model_b = b.build(spec, seed=seed + 100)  # its own, different init, overwritten below
    b.set_weights(model_b, spec, a.get_weights(model_a, spec))
    return model_a, model_b


@pytest.mark.parametrize("seed", SEEDS)
def test_round_trip_is_bit_exact(pair, spec, seed):
    a, b = pair
    model_a, model_b = transferred(pair, spec, seed)
    original = a.get_weights(model_a, spec)
    back = a.build(spec, seed=seed + 7)
    a.set_weights(back, spec, b.get_weights(model_b, spec))
    for name, value in a.get_weights(back, spec).items():
        assert np.array_equal(value, original[name]), f"{name}: {worst_mismatch(value, original[name], name)}"


def test_layouts_really_differ(spec):
    """The transfer is not trivial: PyTorch stores conv kernels OIHW and fc1 rows in (C, H, W) order."""
    from tests.helpers import require

    tb = require("torch")
    model = tb.build(spec, seed=0)
    w = random_weights(spec, 3)
    tb.set_weights(model, spec, w)
    assert tuple(model.conv1.weight.shape) == (28, 1, 3, 3)
    # canonical fc1 row for (h=0, w=1, c=0) is row 1*64 = 64; in PyTorch it is input column 0*9 + 1 = 1
    assert np.array_equal(model.fc1.weight.detach().numpy()[:, 1], w["fc1/kernel"][64])


@pytest.mark.parametrize("seed", SEEDS)
def test_logits_equal_on_all_mnist_test_images(pair, spec, mnist, seed):
    a, b = pair
    model_a, model_b = transferred(pair, spec, seed)
    x = mnist.images("test")
    logits_a, logits_b = a.predict(model_a, x), b.predict(model_b, x)
    assert logits_a.shape == logits_b.shape == (10_000, 10)
    m = assert_close(logits_b, logits_a, LOGIT_ATOL, f"{b.NAME} vs {a.NAME}: logits on 10,000 test images, seed {seed}")
    print(f"{b.NAME} vs {a.NAME}, seed {seed}: logits {m}")
    assert_same_argmax(logits_b, logits_a, f"seed {seed}")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_logits_equal_on_random_inputs(pair, spec, seed, scale):
    """Inputs outside [0, 1] too: negative and large values exercise every ReLU branch."""
    a, b = pair
    model_a, model_b = transferred(pair, spec, seed)
    x = (np.random.default_rng(seed).standard_normal((256, 28, 28, 1)) * scale).astype(np.float32)
    logits_a, logits_b = a.predict(model_a, x), b.predict(model_b, x)
    assert_close(logits_b, logits_a, LOGIT_ATOL * scale, f"{b.NAME} vs {a.NAME}: logits on N(0, {scale}^2) inputs, seed {seed}")
    assert_same_argmax(logits_b, logits_a, f"seed {seed}")


@pytest.mark.parametrize("seed", SEEDS)
def test_gradients_equal_per_parameter(pair, spec, mnist, seed):
    a, b = pair
    model_a, model_b = transferred(pair, spec, seed)
    idx = np.random.default_rng(seed).choice(len(mnist.y_train), 64, replace=False)
    x, y = mnist.images("train")[idx], mnist.labels("train")[idx]
    loss_a, grads_a = a.loss_and_grads(model_a, spec, x, y)
    loss_b, grads_b = b.loss_and_grads(model_b, spec, x, y)
    assert abs(loss_a - loss_b) <= LOGIT_ATOL, f"loss {loss_a} vs {loss_b}"
    assert list(grads_a) == list(grads_b) == list(spec.weight_shapes())
    for name in grads_a:
        assert np.abs(grads_a[name]).max() > 0, f"{name}: zero gradient proves nothing"
        assert_close(grads_b[name], grads_a[name], GRAD_ATOL, f"{b.NAME} vs {a.NAME}: gradient of {name}, seed {seed}")
    print(f"{b.NAME} vs {a.NAME}, seed {seed}: gradients {worst_mismatch(grads_b, grads_a)}")


def test_shared_initial_weights_are_keras_style(spec):
    w = initial_weights(spec, 42)
    assert all(not v.any() for k, v in w.items() if k.endswith("/bias"))
    limit = np.sqrt(6 / (576 + 64))
    assert np.abs(w["fc1/kernel"]).max() <= limit and np.abs(w["fc1/kernel"]).max() > 0.9 * limit
    assert np.array_equal(w["conv2/kernel"], initial_weights(spec, 42)["conv2/kernel"])
