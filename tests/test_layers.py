"""Every layer type: each twin's logits in inference mode against the NumPy reference, each twin's gradients in
training mode against the reference twin's, BatchNorm's batch and moving statistics, dropout in expectation,
and `twincnn summary` for each type. Each test prints its worst mismatch (pytest -s shows them)."""

import functools

import numpy as np
import pytest

from tests.helpers import (DROPOUT_SIGMAS, GRAD_ATOL, LOGIT_ATOL, MOVING_STAT_ATOL, NORM_GRAD_ATOL, assert_close,
                           built_twins, draw_clear_of_kinks, require, scaled)
from twincnn import reference, zoo
from twincnn.spec import (FLATTEN, GLOBAL_AVG_POOL, Spec, activation, add, avgpool, batchnorm, concatenate, conv,
                          dense, depthwise, dropout, layernorm, pool, zeropad)
from twincnn.summary import summarize
from twincnn.weights import random_weights

pytestmark = pytest.mark.equivalence

INPUT = (12, 10, 3)  # height != width, so a swapped axis changes some number
STEM = conv(4, 3, 1, "same", "relu")  # gives the layer under test a non-trivial, multi-channel input
ACTIVATIONS = ["relu", "sigmoid", "tanh", "elu", "silu", "gelu", "gelu_tanh", "leaky_relu"]


def case(*layers, head=(FLATTEN, dense(10))):
    return Spec(INPUT, (STEM, *layers, *head))


CASES = {
    "conv_dilated_same": case({**conv(6, 3, 1, "same"), "dilation_rate": 2}),
    "conv_dilated_valid": case({**conv(6, (3, 2), 1, "valid", None), "dilation_rate": (2, 3)}),
    "conv_grouped_stride2_same": case({**conv(8, 3, 2, "same"), "groups": 2}),
    "conv_grouped_dilated": case({**conv(4, 3, 1, "valid", "tanh"), "groups": 4, "dilation_rate": 2}),
    "conv_even_kernel_stride2_same": case(conv(5, 4, 2, "same")),  # asymmetric padding
    "depthwise_same_stride2_multiplier2": case(depthwise(3, 2, 2, "same", "relu")),
    "depthwise_valid": case(depthwise((3, 2), 1, 1, "valid")),
    "maxpool_same_stride2": case({**pool(3, 2), "padding": "same"}),
    "maxpool_same_stride1": case({**pool(2, 1), "padding": "same"}),
    "avgpool_valid": case(avgpool(2)),
    "avgpool_same_stride2": case(avgpool(3, 2, "same")),
    "avgpool_same_stride1": case(avgpool((2, 3), 1, "same")),
    "globalavgpool": case(conv(6, 3), head=(GLOBAL_AVG_POOL, dense(10))),
    "batchnorm_image": case(batchnorm(0.9, 1e-3)),
    "batchnorm_flat_after_flatten": case(head=(FLATTEN, batchnorm(0.8, 1e-2), dense(10))),
    "batchnorm_after_dense": case(head=(FLATTEN, dense(16, "relu"), batchnorm(), dense(10))),
    "layernorm_image": case(layernorm(1e-3)),
    "layernorm_flat_after_flatten": case(head=(FLATTEN, layernorm(1e-2), dense(10))),
    "dropout_image_and_flat": case(dropout(0.3), head=(FLATTEN, dropout(0.5), dense(10))),
    **{f"activation_{name}": case(conv(6, 3, 1, "same", name), head=(FLATTEN, dense(12, name), dense(10)))
       for name in ACTIVATIONS},
    "activation_leaky_relu_slope": case({**conv(6, 3, 1, "same", "leaky_relu"), "negative_slope": 0.05},
                                        head=(FLATTEN, {**dense(12, "leaky_relu"), "negative_slope": 0.2},
                                              dense(10))),
}
# graphs: the stem is conv1; "inputs" name earlier layers
GRAPHS = {
    "residual_add_then_relu6": case(conv(4, 3, 1, "same", None), batchnorm(), add("conv1", "bn1"),
                                    activation("relu6")),
    "add_three_and_leaky_relu_layer": case(conv(4, 1, 1, "valid", "tanh"), {**conv(4, 3, 1, "same"), "inputs": ["conv1"]},
                                           add("conv1", "conv2", "conv3"), {**activation("leaky_relu"),
                                                                            "negative_slope": 0.1}),
    "concatenate_image_and_flat_branches": case({**conv(3, 3, 2, "same"), "inputs": ["input"]},
                                               {**pool(3, 2), "padding": "same", "inputs": ["conv1"]},
                                               concatenate("conv2", "pool1"), conv(5, 1), FLATTEN, dense(8),
                                               {**dense(6), "inputs": ["flatten"]}, concatenate("fc1", "fc2"),
                                               head=(dense(10),)),
    "conv_explicit_padding_asymmetric": case(conv(5, 3, 2, [[2, 0], [1, 3]])),
    "depthwise_explicit_padding": case(depthwise(3, 2, 1, 1, "relu")),
    "maxpool_explicit_padding": case({**pool(3, 2), "padding": [[1, 0], [0, 1]]}),
    "avgpool_explicit_padding": case(avgpool(3, 2, [[1, 0], [2, 1]])),
    "zeropad_then_maxpool": case(zeropad([[1, 0], [2, 1]]), pool(2)),
    "no_bias": case({**conv(4, 3, 2, "same"), "use_bias": False}, {**depthwise(3), "use_bias": False},
                    head=(FLATTEN, {**dense(10), "use_bias": False})),
    "flatten_in_two_branches": case(pool(2), {**pool(2, 1), "inputs": ["conv1"]}, {**FLATTEN, "inputs": ["pool1"]},
                                    dense(6),
                                    {**FLATTEN, "inputs": ["pool2"]}, batchnorm(), dense(6), add("fc1", "fc2"),
                                    head=(dense(10),)),
}
CASES.update(GRAPHS)
ZOO = {f"zoo:{name}": zoo.load(name) for name in zoo.names()}


def without_dropout(spec: Spec) -> Spec:
    """Dropout at rate 0: each twin draws its own masks, so gradients are compared without them."""
    return Spec(spec.input_shape, tuple({**layer, "rate": 0.0} if layer["type"] == "dropout" else layer
                                        for layer in spec.layers))


def inputs(spec, seed, n=16):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, *spec.input_shape)) + 0.5).astype(np.float32)
    return x, rng.integers(0, spec.num_classes, n)


@functools.cache
def gradient_case(name: str) -> tuple:
    """(spec without dropout, its random weights, a batch of four whose reference forward keeps clear of every
    kink) for case ``name``."""
    spec = without_dropout({**CASES, **ZOO}[name])
    weights = random_weights(spec, 2)
    x, y = draw_clear_of_kinks(spec, weights, lambda seed: inputs(spec, seed, n=4), training=True)
    return spec, weights, x, y


@functools.cache
def training_pass(framework: str, name: str) -> tuple:
    """(loss, gradients, moving statistics after the pass) of ``framework``'s twin of case ``name`` in training
    mode, holding the case's weights: the reference twin's is computed once for every twin compared with it."""
    backend = require(framework)
    spec, weights, x, y = gradient_case(name)
    (model,) = built_twins([backend], spec, weights, 2)
    loss, grads = backend.loss_and_grads(model, spec, x, y)
    after = backend.get_weights(model, spec)
    return loss, grads, {key: after[key] for key in spec.weight_shapes() if key not in spec.trainable_weight_shapes()}


@pytest.mark.parametrize("name", list(CASES) + list(ZOO))
def test_gradients_equal_in_training_mode(pair, name):
    """Training mode: BatchNorm normalises with the batch statistics (and updates its moving ones). A batch of
    four, so that one whose ReLU inputs all keep clear of the kink exists among a few draws."""
    a, b = pair
    spec = gradient_case(name)[0]
    (loss_a, grads_a, moving_a), (loss_b, grads_b, moving_b) = (training_pass(a.NAME, name),
                                                                training_pass(b.NAME, name))
    assert abs(loss_a - loss_b) <= scaled(LOGIT_ATOL, loss_a), f"{name}: loss {loss_a} vs {loss_b}"
    assert list(grads_a) == list(grads_b) == list(spec.trainable_weight_shapes())
    for key in grads_a:
        assert np.abs(grads_a[key]).max() > 0, f"{name}: {key} has a zero gradient, which proves nothing"
    atol = NORM_GRAD_ATOL if any(i.type == "batchnorm" for i in spec.info) else GRAD_ATOL
    # float32 error grows with the gradients' size: a batch of four gives some of order 1
    atol = scaled(atol, np.concatenate([g.ravel() for g in grads_a.values()]))
    m = assert_close(grads_b, grads_a, atol, f"{b.NAME} vs {a.NAME}, {name}: gradients")
    # the pass moved BatchNorm's moving statistics the same way in both
    assert list(moving_a) == list(moving_b)
    if moving_a:
        assert_close(moving_b, moving_a, MOVING_STAT_ATOL,
                     f"{b.NAME} vs {a.NAME}, {name}: moving statistics after a training-mode pass")
    print(f"{name}: {b.NAME} vs {a.NAME}: loss |Δ| {abs(loss_a - loss_b):.3g}, gradients {m}")


# -- BatchNorm: Keras's statistics, checked against NumPy ---------------------------------------------
BN_SPEC = Spec((6, 5, 3), (batchnorm(0.9, 1e-3), FLATTEN, dense(10)))


def bn_batch(seed=3, n=8):
    """Channels with different means and spreads, so a mixed-up channel or a biased/unbiased slip shows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6, 5, 3)) * np.array([0.5, 1.0, 2.0]) + np.array([-1.0, 0.0, 3.0])
    return x.astype(np.float32), rng.integers(0, 10, n)


def keras_moving_statistics(weights, x, momentum=0.9):
    """moving = momentum * moving + (1 - momentum) * batch statistic, with the *biased* batch variance."""
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    return (momentum * weights["bn1/moving_mean"] + (1 - momentum) * mean,
            momentum * weights["bn1/moving_variance"] + (1 - momentum) * var)


def training_loss(weights, x, y, epsilon=1e-3):
    """The training-mode loss in NumPy: normalised with the batch's own (biased) statistics."""
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    h = (x - mean) / np.sqrt(var + epsilon) * weights["bn1/gamma"] + weights["bn1/beta"]
    logits = h.reshape(len(x), -1) @ weights["fc1/kernel"] + weights["fc1/bias"]
    logits = logits - logits.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(len(y)), y]))


def test_batchnorm_training_pass_uses_batch_statistics_and_updates_moving_ones(framework):
    x, y = bn_batch()
    weights = random_weights(BN_SPEC, 4)
    model = framework.build(BN_SPEC, seed=0)
    framework.set_weights(model, BN_SPEC, weights)
    loss, _ = framework.loss_and_grads(model, BN_SPEC, x, y)
    assert abs(loss - training_loss(weights, x, y)) <= 1e-5, f"{framework.NAME}: training-mode loss {loss}"
    mean, var = keras_moving_statistics(weights, x)
    after = framework.get_weights(model, BN_SPEC)
    assert_close(after["bn1/moving_mean"], mean, MOVING_STAT_ATOL, f"{framework.NAME}: moving mean")
    m = assert_close(after["bn1/moving_variance"], var, MOVING_STAT_ATOL, f"{framework.NAME}: moving variance")
    print(f"{framework.NAME}: moving variance vs Keras's rule in NumPy: {m}")
    for key in ("bn1/gamma", "bn1/beta", "fc1/kernel"):  # a forward pass changes no trainable weight
        assert np.array_equal(after[key], weights[key]), key


@pytest.mark.parametrize("variant", ["idiomatic", "tuned"])
def test_batchnorm_trainer_step_updates_moving_statistics(framework, variant):
    """The training loop's step (what compare times) moves them by Keras's rule too, in both variants."""
    x, y = bn_batch(n=8)
    weights = random_weights(BN_SPEC, 5)
    model = framework.build(BN_SPEC, seed=0)
    framework.set_weights(model, BN_SPEC, weights)
    trainer = framework.make_trainer(model, BN_SPEC, lr=1e-3, adam="keras", variant=variant)
    trainer.set_data(x, y)
    trainer.step(np.arange(8))
    trainer.sync()
    mean, var = keras_moving_statistics(weights, x)
    after = framework.get_weights(trainer.model, BN_SPEC)
    assert_close(after["bn1/moving_mean"], mean, MOVING_STAT_ATOL, f"{framework.NAME} {variant}: moving mean")
    assert_close(after["bn1/moving_variance"], var, MOVING_STAT_ATOL, f"{framework.NAME} {variant}: moving variance")
    assert not np.array_equal(after["bn1/gamma"], weights["bn1/gamma"]), "the step must train gamma"


def test_stock_torch_batchnorm_fails_the_check():
    """nn.BatchNorm2d, even with momentum translated (1 - 0.9) and Keras's epsilon, keeps the unbiased batch
    variance: the moving-variance check above would fail for it, while its mean passes."""
    from tests.helpers import require

    require("torch")
    import torch

    x, _ = bn_batch()
    weights = random_weights(BN_SPEC, 4)
    stock = torch.nn.BatchNorm2d(3, eps=1e-3, momentum=1 - 0.9)
    with torch.no_grad():
        stock.running_mean.copy_(torch.from_numpy(weights["bn1/moving_mean"]))
        stock.running_var.copy_(torch.from_numpy(weights["bn1/moving_variance"]))
        stock.train()(torch.from_numpy(x).permute(0, 3, 1, 2))
    mean, var = keras_moving_statistics(weights, x)
    assert_close(stock.running_mean.numpy(), mean, MOVING_STAT_ATOL, "stock running mean")
    gap = np.abs(stock.running_var.numpy() - var).max()
    assert gap > 100 * MOVING_STAT_ATOL, f"stock running_var is within {gap:.3g} of Keras's: the check cannot see it"
    n = x.shape[0] * x.shape[1] * x.shape[2]  # the unbiased variance is n / (n - 1) times the biased one
    expected_gap = 0.1 * x.var(axis=(0, 1, 2)) / (n - 1)
    assert np.allclose(stock.running_var.numpy() - var, expected_gap, atol=MOVING_STAT_ATOL)
    print(f"stock nn.BatchNorm2d running_var misses Keras's by up to {gap:.3g} (tolerance {MOVING_STAT_ATOL:g})")


# -- Dropout: the identity in inference, inverted dropout in training (in expectation) ----------------------
def test_dropout_is_the_identity_in_inference(framework):
    with_drop = case(dropout(0.5), head=(FLATTEN, dropout(0.7), dense(10)))
    plain = case()
    weights = random_weights(plain, 6)
    x, _ = inputs(plain, 6)
    logits = []
    for spec in (with_drop, plain):
        model = framework.build(spec, seed=0)
        framework.set_weights(model, spec, weights)
        logits.append(framework.predict(model, x))
    assert np.array_equal(logits[0], logits[1]), f"{framework.NAME}: dropout changed inference logits"


FEATURES, DRAWS = 4000, 25


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_dropout_in_training_keeps_1_minus_rate_scaled_up(framework, rate):
    """With zero weights and a one-image batch of ones, d loss / d fc1 kernel[:, j] = 0.1 * mask / (1 - rate)
    for every class j but the label: the gradient shows the dropout mask and its scale."""
    spec = Spec((1, 1, FEATURES), (FLATTEN, dropout(rate), dense(10)))
    model = framework.build(spec, seed=0)
    framework.set_weights(model, spec, {k: np.zeros(s, np.float32) for k, s in spec.weight_shapes().items()})
    x, y = np.ones((1, 1, 1, FEATURES), np.float32), np.array([0])
    masks = []
    for _ in range(DRAWS):
        _, grads = framework.loss_and_grads(model, spec, x, y)
        masks.append(grads["fc1/kernel"][:, 1] / np.float32(0.1))
    out = np.stack(masks)  # the dropout layer's output for an input of ones, DRAWS times
    kept = out != 0
    assert_close(out[kept], np.full(kept.sum(), 1 / (1 - rate)), 1e-5, f"{framework.NAME}: kept values' scale")
    n = out.size
    fraction_sd, mean_sd = np.sqrt(rate * (1 - rate) / n), np.sqrt(rate / (1 - rate) / n)
    assert abs(kept.mean() - (1 - rate)) <= DROPOUT_SIGMAS * fraction_sd, \
        f"{framework.NAME}: kept {kept.mean():.4f}, expected {1 - rate} ± {DROPOUT_SIGMAS * fraction_sd:.4f}"
    assert abs(out.mean() - 1) <= DROPOUT_SIGMAS * mean_sd, \
        f"{framework.NAME}: mean output {out.mean():.4f}, expected 1 ± {DROPOUT_SIGMAS * mean_sd:.4f}"
    assert len({mask.tobytes() for mask in kept}) == DRAWS, "each training pass must draw a new mask"
    print(f"{framework.NAME}, rate {rate}: kept {kept.mean():.4f}, mean {out.mean():.4f} over {n:,} samples")


# -- the plain NumPy reference, against each twin -----------------------------------------------------
@pytest.mark.parametrize("name", list(CASES) + list(ZOO))
def test_reference_matches_each_framework(framework, name):
    spec = {**CASES, **ZOO}[name]
    weights = random_weights(spec, 7)
    model = framework.build(spec, seed=0)
    framework.set_weights(model, spec, weights)
    x, _ = inputs(spec, 7)
    expected = framework.predict(model, x)
    got = reference.forward(spec, weights, x)
    m = assert_close(got, expected, scaled(LOGIT_ATOL, expected), f"NumPy reference vs {framework.NAME}, {name}")
    print(f"{name}: reference vs {framework.NAME}: {m}")


def test_reference_in_training_mode_normalises_with_the_batch_statistics():
    x, y = bn_batch()
    weights = random_weights(BN_SPEC, 4)
    logits = reference.activations(BN_SPEC, weights, x, training=True)["fc1"].astype(np.float64)
    logits -= logits.max(1, keepdims=True)
    loss = float(np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(len(y)), y]))
    assert abs(loss - training_loss(weights, x, y)) <= 1e-5, f"reference training-mode loss {loss}"
    inference = reference.forward(BN_SPEC, weights, x)
    assert np.abs(inference - reference.activations(BN_SPEC, weights, x)["fc1"]).max() == 0
    assert np.abs(inference - logits).max() > 0.1, "training mode used the moving statistics"


@pytest.mark.parametrize("activation, bias, distance", [
    ("relu", 0.25, 0.25), ("relu", -1e-6, 1e-6), ("relu6", 5.5, 0.5), ("tanh", 0.01, np.inf),
    ("relu", 0.0, np.inf),  # exactly at the kink (zeros in, zero bias): exact in every framework, not counted
])
def test_kink_distance_is_the_closest_pre_activation_to_a_kink(activation, bias, distance):
    spec = Spec((2, 2, 1), (FLATTEN, dense(3, activation), dense(10)))
    weights = {**random_weights(spec, 0), "fc1/kernel": np.zeros((4, 3), np.float32),
               "fc1/bias": np.full(3, bias, np.float32)}
    x = np.ones((2, 2, 2, 1), np.float32)
    assert reference.kink_distance(spec, weights, x, training=False) == pytest.approx(distance)


# -- `twincnn summary`: each type builds with the spec's shapes and weight counts ------------------------
KITCHEN_SINK = Spec((14, 12, 2), (
    {**conv(4, 3, 1, "same", "elu"), "dilation_rate": 2, "groups": 2}, depthwise(3, 2, 2, "same", "silu"),
    batchnorm(), {**pool(3, 2), "padding": "same"}, avgpool(2, 1, "same"), layernorm(), dropout(0.2), FLATTEN,
    batchnorm(), layernorm(), dropout(0.1), dense(8, "gelu"), {**dense(6, "leaky_relu"), "negative_slope": 0.1},
    dense(10)))


@pytest.mark.parametrize("name", ["kitchen_sink", *CASES, *ZOO])
def test_summary_agrees_for_each_type(framework, name):
    spec = KITCHEN_SINK if name == "kitchen_sink" else {**CASES, **ZOO}[name]
    text, agree = summarize(spec, [framework.NAME])
    assert agree, text


def test_tuned_torch_plan_moves_only_a_max_pool_right_after_relu():
    """Max-pool commutes with ReLU, not with GELU, and not across a BatchNorm: only the first pool here moves."""
    from tests.helpers import require

    tb = require("torch")
    spec = Spec((16, 16, 2), (conv(4, 3, 1, "same", "relu"), pool(2), conv(4, 3, 1, "same", "gelu"), pool(2, 1),
                              conv(4, 3, 1, "same", "relu"), batchnorm(), pool(2), FLATTEN, dense(10)))
    weights = random_weights(spec, 8)
    model = tb.build(spec)
    tb.set_weights(model, spec, weights)
    x, _ = inputs(spec, 8)
    idiomatic = tb.predict(model, x)
    model.set_plan(pool_before_relu=True)
    assert [(call, activation) for call, activation, *_ in model.plan] == [
        ("conv1", None), ("pool1", ("relu", None)), ("conv2", ("gelu", None)), ("pool2", None),
        ("conv3", ("relu", None)), ("bn1", None), ("pool3", None), ("flatten", None), ("fc1", None)]
    tuned = tb.make_predictor(model, "tuned")(x)
    assert_close(tuned, idiomatic, scaled(LOGIT_ATOL, idiomatic), "tuned PyTorch plan vs the plain one")


def test_tuned_torch_plan_keeps_a_relu_whose_output_another_layer_reads():
    """A ReLU moved behind the pool would change what the other reader of the conv sees."""
    from tests.helpers import require

    tb = require("torch")
    spec = Spec((8, 8, 2), (conv(4, 3, 1, "same", "relu"), pool(2), {**conv(4, 2, 2), "inputs": ["conv1"]},
                            add("pool1", "conv2"), FLATTEN, dense(10)))
    model = tb.build(spec)
    model.set_plan(pool_before_relu=True)
    assert [(call, activation) for call, activation, *_ in model.plan][:2] == [("conv1", ("relu", None)),
                                                                              ("pool1", None)]


def test_torch_predictors_leave_the_callers_model_as_it_was():
    """make_predictor works on its own copy: the model keeps its training mode, memory format and plan, and
    the predictor gives the logits of the weights the model had when it was made."""
    from tests.helpers import require

    tb = require("torch")
    import torch

    spec = Spec((16, 16, 2), (conv(4, 3, 1, "same", "relu"), pool(2), batchnorm(), FLATTEN, dense(10)))
    model = tb.build(spec)
    tb.set_weights(model, spec, random_weights(spec, 8))
    x, _ = inputs(spec, 8)
    expected = tb.predict(model, x)
    plan = list(model.plan)
    for variant in ("idiomatic", "tuned"):
        predictor = tb.make_predictor(model, variant)
        assert model.training and model.plan == plan
        assert not model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            model.fc1.bias.add_(1.0)  # the caller trains on: the predictor keeps the weights it was made with
        logits = predictor(x)
        assert_close(logits, expected, scaled(LOGIT_ATOL, expected), f"{variant} predictor vs predict()")
        with torch.no_grad():
            model.fc1.bias.sub_(1.0)
