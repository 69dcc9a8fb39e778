"""Canonical weights in NumPy, without any framework: initialisers, layout check, worst mismatch."""

import numpy as np
import pytest

from twincnn.spec import DEFAULT_SPEC, FLATTEN, Spec, conv, dense
from twincnn.weights import Mismatch, check_layout, initial_weights, random_weights, worst_mismatch

SMALL = Spec((6, 6, 2), (conv(3, (3, 2)), FLATTEN, dense(4)))  # conv1 (3, 2, 2, 3), fc1 (60, 4)


# -- initial_weights: Keras's Glorot-uniform kernels, zero biases ----------------------------------
def test_initial_weights_have_the_spec_layout_and_float32():
    w = initial_weights(DEFAULT_SPEC, 0)
    assert list(w) == list(DEFAULT_SPEC.weight_shapes())
    for name, shape in DEFAULT_SPEC.weight_shapes().items():
        assert w[name].shape == shape and w[name].dtype == np.float32, name


@pytest.mark.parametrize("name,fan_in,fan_out", [
    ("conv1/kernel", 3 * 2 * 2, 3 * 2 * 3),  # receptive field 3x2 times in/out channels
    ("fc1/kernel", 60, 4),
])
def test_glorot_limit_per_layer(name, fan_in, fan_out):
    w = initial_weights(SMALL, 1)[name]
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    # uniform on (-limit, limit): nothing outside, and with this many draws the extremes come close to it
    assert np.abs(w).max() <= limit, f"{name}: max {np.abs(w).max():.4f} > limit {limit:.4f}"
    assert np.abs(w).max() > 0.85 * limit, f"{name}: max {np.abs(w).max():.4f} far below limit {limit:.4f}"
    assert w.min() < 0 < w.max()


def test_glorot_limits_of_the_notebook_cnn():
    w = initial_weights(DEFAULT_SPEC, 42)
    for name, fan_in, fan_out in [("conv1/kernel", 9, 252), ("conv2/kernel", 252, 576), ("fc1/kernel", 576, 64),
                                  ("fc2/kernel", 64, 10)]:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        assert 0.9 * limit < np.abs(w[name]).max() <= limit, name


def test_initial_biases_are_zero_and_kernels_are_not():
    w = initial_weights(SMALL, 3)
    assert not w["conv1/bias"].any() and not w["fc1/bias"].any()
    assert w["conv1/bias"].dtype == np.float32
    assert np.count_nonzero(w["fc1/kernel"]) == w["fc1/kernel"].size


def test_initial_weights_depend_on_the_seed_only():
    a, b, c = initial_weights(SMALL, 7), initial_weights(SMALL, 7), initial_weights(SMALL, 8)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert not np.array_equal(a["fc1/kernel"], c["fc1/kernel"])


def test_initial_weights_are_numpy_glorot_draws():
    """The exact stream: uniform(-limit, limit) from default_rng(seed), layer by layer."""
    rng = np.random.default_rng(5)
    conv_limit, fc_limit = np.sqrt(6.0 / (12 + 18)), np.sqrt(6.0 / (60 + 4))
    expected_conv = rng.uniform(-conv_limit, conv_limit, (3, 2, 2, 3)).astype(np.float32)
    expected_fc = rng.uniform(-fc_limit, fc_limit, (60, 4)).astype(np.float32)
    w = initial_weights(SMALL, 5)
    assert np.array_equal(w["conv1/kernel"], expected_conv)
    assert np.array_equal(w["fc1/kernel"], expected_fc)


# -- random_weights: kernels and non-zero biases ---------------------------------------------------
def test_random_weights_layout_and_values():
    w = random_weights(SMALL, 0)
    assert list(w) == list(SMALL.weight_shapes())
    for name, shape in SMALL.weight_shapes().items():
        assert w[name].shape == shape and w[name].dtype == np.float32, name
    for name in ("conv1/bias", "fc1/bias"):
        assert np.all(w[name] != 0) and np.abs(w[name]).max() <= 0.5, name  # uniform(-0.5, 0.5)
    assert np.array_equal(w["fc1/kernel"], random_weights(SMALL, 0)["fc1/kernel"])
    assert not np.array_equal(w["fc1/kernel"], random_weights(SMALL, 1)["fc1/kernel"])


def test_random_kernels_are_scaled_by_fan_in():
    """standard_normal * scale / sqrt(fan in): the standard deviation is scale / sqrt(fan in)."""
    spec = Spec((20, 20, 4), (conv(64, 5), FLATTEN, dense(10)))
    w = random_weights(spec, 0, scale=0.5)
    std = w["conv1/kernel"].std()
    expected = 0.5 / np.sqrt(5 * 5 * 4)
    assert abs(std - expected) < 0.05 * expected, f"std {std:.5f}, expected {expected:.5f}"
    assert abs(random_weights(spec, 0, scale=1.0)["conv1/kernel"].std() - 2 * std) < 1e-6


def test_random_kernel_with_a_single_input_has_the_full_scale():
    spec = Spec((4, 4, 1), (conv(200, 1), FLATTEN, dense(10)))  # a 1x1 kernel on one channel: fan in 1
    std = random_weights(spec, 0, scale=0.3)["conv1/kernel"].std()
    assert abs(std - 0.3) < 0.05 * 0.3, f"std {std:.4f}, expected 0.3"


def test_random_weights_are_the_documented_draws():
    rng = np.random.default_rng(4)
    kernel = (rng.standard_normal((3, 2, 2, 3)) * 0.3 / np.sqrt(12)).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, (3,)).astype(np.float32)
    w = random_weights(SMALL, 4)
    assert np.array_equal(w["conv1/kernel"], kernel) and np.array_equal(w["conv1/bias"], bias)


# -- check_layout ----------------------------------------------------------------------------------
def test_check_layout_accepts_the_spec_layout():
    check_layout(SMALL, initial_weights(SMALL, 0))
    check_layout(SMALL, {k: np.zeros(s).tolist() for k, s in SMALL.weight_shapes().items()})  # any array-like


def test_check_layout_names_missing_and_unexpected():
    w = initial_weights(SMALL, 0)
    w.pop("fc1/bias")
    w["fc9/kernel"] = np.zeros(1)
    with pytest.raises(ValueError) as err:
        check_layout(SMALL, w)
    assert str(err.value) == "weights do not fit the spec: missing ['fc1/bias'], unexpected ['fc9/kernel']"


def test_check_layout_only_missing():
    w = initial_weights(SMALL, 0)
    w.pop("conv1/kernel")
    with pytest.raises(ValueError, match=r"missing \['conv1/kernel'\], unexpected \[\]"):
        check_layout(SMALL, w)


def test_check_layout_only_unexpected():
    w = initial_weights(SMALL, 0)
    w["extra"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['extra'\]"):
        check_layout(SMALL, w)


def test_check_layout_names_the_wrong_shape():
    w = initial_weights(SMALL, 0)
    w["fc1/kernel"] = w["fc1/kernel"].T
    with pytest.raises(ValueError) as err:
        check_layout(SMALL, w)
    assert str(err.value) == "weight fc1/kernel has shape (4, 60), the spec needs (60, 4)"


# -- worst_mismatch ----------------------------------------------------------------------------------
def test_worst_mismatch_finds_the_worst_element():
    a = np.zeros((2, 3), np.float32)
    b = a.copy()
    b[1, 2], b[0, 1] = 0.5, -0.75
    m = worst_mismatch(a, b, "logits")
    assert (m.max_abs, m.where, m.a, m.b) == (0.75, "logits[0, 1]", 0.0, -0.75)


def test_worst_mismatch_of_equal_arrays_is_zero():
    m = worst_mismatch(np.ones(4), np.ones(4))
    assert m.max_abs == 0.0 and m.where == "array[0]"


def test_worst_mismatch_in_float64():
    """float32 inputs are compared in float64: a one-ulp difference is not rounded away."""
    a = np.float32(1.0)
    b = np.nextafter(a, np.float32(2.0))
    m = worst_mismatch(np.array([a]), np.array([b]))
    assert m.max_abs == float(b) - 1.0 and m.max_abs > 0


def test_worst_mismatch_of_integers_does_not_wrap():
    """uint8 pixels or labels: 0 - 1 must be a difference of 1, not 255."""
    m = worst_mismatch(np.array([0, 7], np.uint8), np.array([1, 7], np.uint8))
    assert (m.max_abs, m.where) == (1.0, "array[0]")


def test_worst_mismatch_of_large_float32_values_is_exact():
    """float32 cannot hold 1e8 - 1 (its ulp there is 8): the difference is taken in float64."""
    a, b = np.array([1e8], np.float32), np.array([1.0], np.float32)
    assert worst_mismatch(a, b).max_abs == 99_999_999.0


def test_worst_mismatch_treats_nan_as_infinitely_wrong():
    m = worst_mismatch(np.array([0.0, 1.0, 2.0]), np.array([0.5, np.nan, 2.0]))
    assert m.max_abs == np.inf and m.where == "array[1]" and np.isnan(m.b)


def test_worst_mismatch_shape_difference_is_an_error():
    with pytest.raises(ValueError, match=r"fc1/kernel: shapes differ, \(2, 3\) vs \(3, 2\)"):
        worst_mismatch(np.zeros((2, 3)), np.zeros((3, 2)), "fc1/kernel")


def test_worst_mismatch_of_empty_arrays():
    m = worst_mismatch(np.zeros((0, 10)), np.zeros((0, 10)), "logits")
    assert (m.max_abs, m.where, m.a, m.b) == (0.0, "logits (empty)", 0.0, 0.0)


def test_worst_mismatch_over_dicts_names_the_worst_weight():
    a = {"conv1/kernel": np.zeros(3), "fc1/kernel": np.zeros((2, 2)), "fc1/bias": np.zeros(2)}
    b = {"conv1/kernel": np.array([0.0, 0.1, 0.0]), "fc1/kernel": np.array([[0.0, 0.0], [0.0, -0.3]]),
         "fc1/bias": np.array([0.2, 0.0])}
    m = worst_mismatch(a, b)
    assert (m.where, m.b) == ("fc1/kernel[1, 1]", -0.3) and m.max_abs == pytest.approx(0.3)


def test_worst_mismatch_over_dicts_keeps_the_first_of_equal_mismatches():
    a = {"x": np.zeros(1), "y": np.zeros(1)}
    b = {"x": np.ones(1), "y": -np.ones(1)}
    assert worst_mismatch(a, b).where == "x[0]"


def test_worst_mismatch_over_equal_dicts_names_an_element():
    a = {"x": np.ones(2), "y": np.ones(2)}
    m = worst_mismatch(a, {k: v.copy() for k, v in a.items()})
    assert m.max_abs == 0.0 and m.where == "x[0]"


def test_worst_mismatch_over_an_empty_dict():
    m = worst_mismatch({}, {})
    assert (m.max_abs, m.where, m.a, m.b) == (0.0, "(no elements)", 0.0, 0.0)


def test_mismatch_reads_as_one_line():
    text = str(Mismatch(1.2345e-5, "fc1/kernel[3, 4]", 0.5, 0.4999876))
    assert text == "max |Δ| = 1.23e-05 at fc1/kernel[3, 4]: 0.5 vs 0.4999876"


def test_digest_tells_weights_apart_bit_for_bit():
    from twincnn.weights import digest

    w = initial_weights(DEFAULT_SPEC, 0)
    assert digest(w) == digest({k: v.astype(np.float64) for k, v in w.items()})  # as float32 either way
    assert digest(w) != digest(initial_weights(DEFAULT_SPEC, 1))
    nudged = dict(w, **{"fc2/bias": np.nextafter(w["fc2/bias"], np.float32(1))})
    assert digest(nudged) != digest(w)
    renamed = {("x" + k if k == "fc2/bias" else k): v for k, v in w.items()}
    assert digest(renamed) != digest(w)
