"""The JAX twin's own parts: Keras's Adam in optax, tuned = idiomatic, partial batches, thread setting, files."""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import (ADAM_ATOL, GRAD_ATOL, LR, STEP_ATOL, assert_close, run_keras, run_keras_adam_in_optax,
                           run_keras_adam_in_torch,
                           start_and_gradients, scaled, assert_trained_alike, unidentified_weights)
from twincnn.weights import initial_weights

# The tests of numbers against a reference (Keras's Adam, NumPy, the idiomatic step) are marked equivalence:
# CI runs them again at lower instruction sets; the tests of structure (layouts, files, compilation) are not.
pytestmark = pytest.mark.jax


@pytest.fixture(scope="module")
def jb():
    from tests.helpers import require

    return require("jax")


@pytest.mark.equivalence
def test_optax_keras_adam_matches_keras_over_twelve_steps(jb):
    from tests.helpers import require

    tfb = require("tensorflow")
    start, steps = start_and_gradients()
    expected = run_keras(tfb.keras, tfb.tf, start, steps)
    moved = max(np.abs(expected[k] - w).max() for k, w in zip(expected, start))
    assert moved > 100 * ADAM_ATOL, f"weights moved only {moved:.3g}: the comparison would prove nothing"
    m = assert_close(run_keras_adam_in_optax(jb, start, steps), expected, ADAM_ATOL,
                     f"keras_adam (optax) vs keras.optimizers.Adam, {len(steps)} steps")
    print(f"optax keras_adam vs Keras after {len(steps)} steps: {m}")


@pytest.mark.equivalence
def test_optax_keras_adam_matches_torch_keras_adam(jb):
    from tests.helpers import require

    tb = require("torch")
    start, steps = start_and_gradients(seed=1)
    m = assert_close(run_keras_adam_in_optax(jb, start, steps), run_keras_adam_in_torch(tb, start, steps),
                     ADAM_ATOL, "keras_adam (optax) vs KerasAdam (PyTorch)")
    print(f"optax keras_adam vs PyTorch KerasAdam after {len(steps)} steps: {m}")


@pytest.mark.equivalence
def test_native_adam_is_not_keras_adam(jb):
    """The control: optax.adam's own formula (eps 1e-8 on sqrt(v_hat)) is visibly another update."""
    import jax.numpy as jnp
    import optax

    start, steps = start_and_gradients()
    keras_like = run_keras_adam_in_optax(jb, start, steps)
    tx, params = jb.make_optimizer(LR, "native"), [jnp.asarray(w) for w in start]
    state = tx.init(params)
    for grads in steps:
        updates, state = tx.update([jnp.asarray(g) for g in grads], state, params)
        params = optax.apply_updates(params, updates)
    worst = max(np.abs(np.asarray(p) - keras_like[f"w{i}"]).max() for i, p in enumerate(params))
    assert worst > 100 * ADAM_ATOL, f"optax.adam and keras_adam differ by only {worst:.3g}"


def _trained(jb, spec, variant, x, y, batches):
    model = jb.build(spec, seed=0)
    jb.set_weights(model, spec, initial_weights(spec, 0))
    trainer = jb.make_trainer(model, spec, variant=variant)
    trainer.set_data(x, y)
    losses = [float(trainer.step(idx)) for idx in batches]
    trainer.sync()
    return jb.get_weights(model, spec), losses


@pytest.mark.equivalence
def test_tuned_step_is_the_idiomatic_step(jb, spec, mnist):
    """Pure jit with donated buffers vs nnx.Optimizer + nnx.jit: the same update, partial batch included."""
    x, y = mnist.images("train")[:200], mnist.labels("train")[:200]
    batches = [np.arange(0, 64), np.arange(64, 128), np.arange(128, 160)]  # the last one partial: 32 rows
    tuned, tuned_losses = _trained(jb, spec, "tuned", x, y, batches)
    plain, plain_losses = _trained(jb, spec, "idiomatic", x, y, batches)
    assert tuned_losses == pytest.approx(plain_losses, abs=1e-6)
    moved = max(np.abs(plain[k] - w).max() for k, w in initial_weights(spec, 0).items())
    assert moved > 100 * STEP_ATOL, f"three steps moved the weights by only {moved:.3g}"
    m = assert_close(tuned, plain, STEP_ATOL, "tuned vs idiomatic JAX weights after 3 steps")
    print(f"JAX tuned vs idiomatic, 3 steps, the notebook's CNN: {m}")


@pytest.mark.parametrize("variant", ["idiomatic", "tuned"])
def test_epoch_with_partial_last_batch(jb, spec, mnist, variant):
    x, y = mnist.images("train")[:100], mnist.labels("train")[:100]
    model = jb.build(spec, seed=0)
    trainer = jb.make_trainer(model, spec, variant=variant)
    trainer.set_data(x, y)
    seen = []
    loss = trainer.train_epoch(np.arange(100), 64, seen.append)  # 64 + 36 rows
    trainer.sync()
    assert seen == [1, 2] and np.isfinite(loss) and 0 < loss < 10
    assert trainer.predict(x[:5]).shape == (5, 10)
    assert jb.predict(model, x[:5]).shape == (5, 10)  # the model is current again after the epoch
    loss = trainer.train_epoch(None, 64)  # JAX's own shuffle
    assert np.isfinite(loss)


def test_layouts_are_flax_native(jb, spec):
    """Flax keeps HWIO kernels and (in, out) dense kernels: get_weights maps names only."""
    model = jb.build(spec, seed=0)
    assert tuple(model.conv1.kernel.shape) == (3, 3, 1, 28) and tuple(model.fc1.kernel.shape) == (576, 64)
    w = jb.get_weights(model, spec)
    assert np.array_equal(w["fc1/kernel"], np.asarray(model.fc1.kernel[...]))


def test_configure_threads_before_the_first_operation(tmp_path):
    """One thread: the XLA client is created pinned to one CPU and Eigen's multi-threading is off."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to tell one thread from all")
    from tests.helpers import require

    require("jax")
    code = ("import os; from twincnn.backends import load; jb = load('jax'); threads = jb.configure(1);"
            "from twincnn.spec import DEFAULT_SPEC; import numpy as np;"
            "jb.predict(jb.build(DEFAULT_SPEC), np.zeros((8, 28, 28, 1), np.float32));"
            "pinned = sum(1 for t in os.listdir('/proc/self/task') if open(f'/proc/self/task/{t}/status').read()"
            ".split('Cpus_allowed_list:')[1].split()[0].isdigit());"
            "env = jb.environment(); again = jb.configure(2);"
            "print(threads['intra_op_threads'], again['intra_op_threads'], pinned, env['xla_flags'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "XLA_FLAGS": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    threads, again, pinned, flags = result.stdout.split()[-4:]
    assert threads == again == "1", result.stdout  # too late to change: what is in force is reported
    assert int(pinned) >= 1 and flags == "--xla_cpu_multi_thread_eigen=false", result.stdout


@pytest.mark.parametrize("content,message", [(b"", "not Flax parameters"), (b"junk", "not Flax parameters")])
def test_bad_msgpack_file_is_a_value_error(jb, spec, tmp_path, content, message):
    path = tmp_path / "w.msgpack"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        jb.load_file(path, spec)


def test_msgpack_of_another_spec_is_refused(jb, spec, tmp_path):
    from twincnn.spec import FLATTEN, Spec, conv, dense

    small = Spec((28, 28, 1), (conv(4), FLATTEN, dense(10)))
    path = tmp_path / "w.msgpack"
    jb.save_file(jb.build(small, seed=0), small, path)
    with pytest.raises(ValueError, match="does not match the spec"):
        jb.load_file(path, spec)
    model, _ = jb.load_file(path, small)
    assert jb.layer_summary(model, small)[0][1] == (26, 26, 4)


def test_cuda_without_a_gpu_is_one_clear_line(jb):
    import jax

    from twincnn.errors import UserError

    try:
        has_gpu = bool(jax.devices("gpu"))
    except RuntimeError:
        has_gpu = False
    if has_gpu:
        assert jb.resolve_device("cuda") == "gpu"
        assert jax.config.jax_default_matmul_precision == "highest"  # float32 comparisons: no TF32 passes
        return
    with pytest.raises(UserError, match="this JAX sees no GPU") as info:
        jb.resolve_device("cuda")
    assert len(str(info.value).splitlines()) == 1


# -- the layer types beyond conv/pool/dense: JAX's own parts ------------------------------------------
def _spec(input_shape, *layers):
    from twincnn.spec import Spec

    return Spec(input_shape, layers)


def _identity_head(n, activation=None, **settings):
    """dense(n) with an identity kernel set below, so the logits are the layer before it, activated."""
    return {"type": "dense", "units": n, "activation": activation, **settings}


def _with_identity(jb, spec):
    """The twin with every weight random except identity dense kernels and zero biases on them."""
    from twincnn.weights import random_weights

    weights = random_weights(spec, 0)
    for info in spec.param_layers:
        if info.type == "dense" and info.weight_shapes["kernel"][0] == info.weight_shapes["kernel"][1]:
            weights[f"{info.name}/kernel"] = np.eye(info.weight_shapes["kernel"][0], dtype=np.float32)
            weights[f"{info.name}/bias"][:] = 0
    model = jb.build(spec, seed=0)
    jb.set_weights(model, spec, weights)
    return model, weights


CONV = {"type": "conv2d", "filters": 6, "kernel_size": 3, "activation": None}
BN = {"type": "batchnorm", "momentum": 0.8, "epsilon": 1e-2}  # neither Flax's (0.99, 1e-5) nor Keras's defaults
DROP = {"type": "dropout", "rate": 0.4}
POOL = {"type": "maxpool2d", "pool_size": 2}
STATEFUL_SPECS = {
    "batchnorm": ((28, 28, 1), CONV, BN, POOL, {"type": "flatten"}, {"type": "dense", "units": 10}),
    "dropout": ((28, 28, 1), CONV, POOL, {"type": "flatten"}, DROP, {"type": "dense", "units": 10}),
    "both": ((28, 28, 1), CONV, BN, POOL, DROP,
             {"type": "depthwiseconv2d", "kernel_size": 3, "depth_multiplier": 2, "activation": "relu"},
             {"type": "globalavgpool2d"}, {"type": "layernorm", "epsilon": 1e-3}, {"type": "dense", "units": 10}),
}


@pytest.mark.equivalence
@pytest.mark.parametrize("name", STATEFUL_SPECS)
def test_tuned_step_threads_batch_stats_and_dropout_like_the_idiomatic_step(jb, mnist, name):
    """The pure jit step carries BatchNorm's moving statistics and the dropout stream through itself: after
    three steps (the last partial) both variants hold the same weights *and* statistics, having drawn the
    same masks."""
    spec = _spec(*STATEFUL_SPECS[name])
    x, y = mnist.images("train")[:200], mnist.labels("train")[:200]
    batches = [np.arange(0, 64), np.arange(64, 128), np.arange(128, 160)]
    tuned, tuned_losses = _trained(jb, spec, "tuned", x, y, batches)
    plain, plain_losses = _trained(jb, spec, "idiomatic", x, y, batches)
    assert tuned_losses == pytest.approx(plain_losses, abs=1e-6)
    start = initial_weights(spec, 0)
    moved = {k: np.abs(plain[k] - w).max() for k, w in start.items()}
    assert max(moved.values()) > 100 * STEP_ATOL, f"three steps moved the weights by only {moved}"
    for key in (k for k in start if "/moving_" in k):  # the statistics moved too, in both variants
        assert moved[key] > 1e-3, f"{key} did not move: {moved[key]:.3g}"
    m = assert_trained_alike(tuned, plain, spec, len(batches), f"{name}: tuned vs idiomatic JAX weights after 3 steps")
    print(f"{name}: tuned vs idiomatic after 3 steps: {m}")


@pytest.mark.equivalence
def test_batchnorm_moving_statistics_follow_keras_momentum_and_biased_variance(jb, mnist):
    """BatchNorm first, so its batch statistics are the input's: moving = m*moving + (1-m)*batch, with
    the biased batch variance, m=0.8 and epsilon 0.01 from the spec (Flax's defaults are 0.99 and 1e-5)."""
    import jax.numpy as jnp

    spec = _spec((28, 28, 1), BN, {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
                 {"type": "flatten"}, {"type": "dense", "units": 10})
    x, y = mnist.images("train")[:64], mnist.labels("train")[:64]
    model = jb.build(spec, seed=0)
    jb.set_weights(model, spec, initial_weights(spec, 0))
    gamma, beta = np.float32(1.5), np.float32(-0.25)
    model.bn1.scale.set_value(jnp.full((1,), gamma))
    model.bn1.bias.set_value(jnp.full((1,), beta))
    batch_mean, batch_var = x.astype(np.float64).mean(), x.astype(np.float64).var()  # ddof=0: biased
    normalised = np.asarray(model.bn1(jnp.asarray(x), use_running_average=False))  # also updates the statistics
    expected = gamma * (x - batch_mean) / np.sqrt(batch_var + 1e-2) + beta
    assert_close(normalised, expected, 1e-5, "training-mode BatchNorm vs NumPy")
    model.bn1.mean.set_value(jnp.zeros((1,)))
    model.bn1.var.set_value(jnp.ones((1,)))
    _, grads = jb.loss_and_grads(model, spec, x, y)  # training mode: one update of the statistics
    w = jb.get_weights(model, spec)
    assert w["bn1/moving_mean"][0] == pytest.approx(0.2 * batch_mean, rel=1e-5)
    assert w["bn1/moving_variance"][0] == pytest.approx(0.8 + 0.2 * batch_var, rel=1e-5)
    assert set(grads) == {k for k in spec.weight_shapes() if "/moving_" not in k}  # trainable ones only
    inference = np.asarray(model.bn1(jnp.asarray(x[:4]), use_running_average=True))
    assert_close(inference, gamma * (x[:4] - w["bn1/moving_mean"][0])
                 / np.sqrt(w["bn1/moving_variance"][0] + 1e-2) + beta, 1e-5, "inference-mode BatchNorm")


def test_dropout_is_identity_in_inference_and_seeded_inverted_dropout_in_training(jb):
    import jax.numpy as jnp

    spec = _spec((4, 4, 3), {"type": "flatten"}, DROP, _identity_head(48))
    x = np.random.default_rng(0).uniform(0.5, 1.5, (32, 4, 4, 3)).astype(np.float32)
    model, weights = _with_identity(jb, spec)
    assert np.array_equal(jb.predict(model, x), x.reshape(32, -1))  # inference: identity, exactly

    def two_masks(seed):
        twin = jb.build(spec, seed=seed)
        jb.set_weights(twin, spec, weights)
        return [np.asarray(twin(jnp.asarray(x), train=True)) for _ in range(2)]

    first, second = two_masks(0)
    flat = x.reshape(32, -1)
    kept = first != 0
    assert np.allclose(first[kept], flat[kept] / (1 - 0.4), rtol=1e-6)  # inverted: kept cells scaled up
    assert 0.3 < 1 - kept.mean() < 0.5  # about the rate, over 1536 cells
    assert not np.array_equal(first, second)  # the stream advances per call
    assert all(np.array_equal(a, b) for a, b in zip(two_masks(0), (first, second)))  # the build seed fixes them
    assert not np.array_equal(two_masks(1)[0], first)


def test_depthwise_output_channel_is_c_times_multiplier_plus_m(jb):
    """Flax holds a depthwise kernel as a grouped conv's (kh, kw, 1, in*multiplier); the canonical one is
    (kh, kw, in, multiplier) and output channel c*multiplier + m reads input channel c only."""
    spec = _spec((3, 3, 2), {"type": "depthwiseconv2d", "kernel_size": 1, "depth_multiplier": 3, "activation": None},
                 {"type": "flatten"}, _identity_head(54))
    model, weights = _with_identity(jb, spec)
    assert tuple(model.dw1.kernel.shape) == (1, 1, 1, 6) and weights["dw1/kernel"].shape == (1, 1, 2, 3)
    x = np.random.default_rng(1).standard_normal((5, 3, 3, 2)).astype(np.float32)
    k, b = weights["dw1/kernel"][0, 0], weights["dw1/bias"]
    expected = (x[..., :, None] * k).reshape(5, 3, 3, 6) + b  # [..., c, m] -> channel c*3 + m
    assert_close(jb.predict(model, x), expected.reshape(5, -1), 1e-6, "depthwise vs NumPy")
    assert all(np.array_equal(v, weights[k]) for k, v in jb.get_weights(model, spec).items())


@pytest.mark.equivalence
def test_grouped_and_dilated_conv_against_numpy(jb):
    spec = _spec((7, 7, 4), {"type": "conv2d", "filters": 6, "kernel_size": 3, "groups": 2, "dilation_rate": 2,
                             "activation": None}, {"type": "flatten"}, _identity_head(54))
    model, weights = _with_identity(jb, spec)
    kernel, bias = weights["conv1/kernel"], weights["conv1/bias"]  # (3, 3, 2, 6)
    assert kernel.shape == (3, 3, 2, 6) and tuple(model.conv1.kernel.shape) == (3, 3, 2, 6)
    x = np.random.default_rng(2).standard_normal((3, 7, 7, 4)).astype(np.float32)
    expected = np.zeros((3, 3, 3, 6), np.float64) + bias
    for o in range(6):
        group = o // 3  # filters 0-2 read channels 0-1, filters 3-5 channels 2-3
        for di in range(3):
            for dj in range(3):  # dilation 2: tap (di, dj) reads pixel (i + 2di, j + 2dj)
                window = x[:, 2 * di:2 * di + 3, 2 * dj:2 * dj + 3, 2 * group:2 * group + 2]
                expected[..., o] += window @ kernel[di, dj, :, o]
    assert_close(jb.predict(model, x), expected.reshape(3, -1), 1e-5, "grouped dilated conv vs NumPy")


@pytest.mark.equivalence
@pytest.mark.parametrize("kind,value", [("avgpool2d", 1.0), ("maxpool2d", -1.0)])
def test_same_pooling_ignores_padded_cells(jb, kind, value):
    """5x5 -> 3x3 windows of 2 with 'same' padding: the last row and column of windows overhang. An average
    over real cells only, a max that zero padding cannot win: a constant input stays that constant."""
    spec = _spec((5, 5, 1), {"type": kind, "pool_size": 2, "strides": 2, "padding": "same"},
                 {"type": "flatten"}, _identity_head(9))
    model, _ = _with_identity(jb, spec)
    out = jb.predict(model, np.full((2, 5, 5, 1), value, np.float32))
    assert np.array_equal(out, np.full((2, 9), value, np.float32)), out


@pytest.mark.equivalence
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "elu", "silu", "gelu", "gelu_tanh", "leaky_relu"])
def test_activation_formulas(jb, activation):
    """Each as Keras defines it: gelu exact (jax.nn.gelu's default is the tanh form), leaky_relu with the
    spec's slope (jax.nn.leaky_relu's default is 0.01)."""
    import math

    settings = {"negative_slope": 0.2} if activation == "leaky_relu" else {}
    spec = _spec((1, 1, 41), {"type": "flatten"}, _identity_head(41, activation, **settings), _identity_head(41))
    model, _ = _with_identity(jb, spec)
    x = np.linspace(-4, 4, 41, dtype=np.float32)
    d = x.astype(np.float64)
    erf = np.vectorize(math.erf)
    expected = {
        "relu": np.maximum(d, 0), "sigmoid": 1 / (1 + np.exp(-d)), "tanh": np.tanh(d),
        "elu": np.where(d > 0, d, np.expm1(d)), "silu": d / (1 + np.exp(-d)),
        "gelu": 0.5 * d * (1 + erf(d / np.sqrt(2))),
        "gelu_tanh": 0.5 * d * (1 + np.tanh(np.sqrt(2 / np.pi) * (d + 0.044715 * d ** 3))),
        "leaky_relu": np.where(d > 0, d, 0.2 * d),
    }[activation]
    assert_close(jb.predict(model, x.reshape(1, 1, 1, 41))[0], expected, 2e-6, activation)


@pytest.mark.equivalence
def test_layernorm_over_channels_with_the_spec_epsilon(jb):
    spec = _spec((3, 3, 5), {"type": "layernorm", "epsilon": 0.5}, {"type": "flatten"}, _identity_head(45))
    model, weights = _with_identity(jb, spec)
    x = np.random.default_rng(3).standard_normal((4, 3, 3, 5)).astype(np.float32)
    d = x.astype(np.float64)
    mean, var = d.mean(-1, keepdims=True), d.var(-1, keepdims=True)
    expected = (d - mean) / np.sqrt(var + 0.5) * weights["ln1/gamma"] + weights["ln1/beta"]
    assert_close(jb.predict(model, x), expected.reshape(4, -1), 1e-5, "layernorm vs NumPy")


def test_msgpack_keeps_the_moving_statistics(jb, tmp_path):
    spec = _spec(*STATEFUL_SPECS["both"])
    model, weights = _with_identity(jb, spec)
    path = tmp_path / "w.msgpack"
    jb.save_file(model, spec, path)
    loaded, _ = jb.load_file(path, spec)
    back = jb.get_weights(loaded, spec)
    assert list(back) == list(spec.weight_shapes())
    assert all(np.array_equal(back[k], weights[k]) for k in weights)
    rows = jb.layer_summary(loaded, spec)
    assert [(tuple(s), p) for _, s, p in rows] == [(i.output_shape, i.params) for i in spec.info]


def test_audit_reads_the_flax_layer_defaults_the_twin_overrides(jb):
    """The JAX column of `twincnn audit` for the zoo's layers: each default read from the installed Flax/jax,
    each one the JAX twin passes explicitly because it differs from Keras's."""
    from twincnn.backends import defaults

    read = defaults.read("jax")
    assert {key for key, *_ in defaults.ROWS} <= set(read)
    assert read["bn_momentum"].startswith("nnx.BatchNorm(momentum=0.99): moving = m·moving")
    assert read["bn_epsilon"] == "nnx.BatchNorm(epsilon=1e-05)"
    assert read["bn_variance"].startswith("biased: the moving variance after one batch [0, 2] is 1;")
    assert read["avgpool_same"] == "avg_pool(count_include_pad=True): the whole window"
    assert read["same_side"].endswith("pad (0, 1): the odd pixel after (bottom/right)")
    assert read["gelu"] == "jax.nn.gelu(approximate=True)"
    assert read["leaky_slope"] == "jax.nn.leaky_relu(negative_slope=0.01)"
    assert read["ln_epsilon"] == "nnx.LayerNorm(epsilon=1e-06)"
    assert "(3, 3, 1, 6)" in read["depthwise_layout"]


@pytest.mark.parametrize("variant", ["idiomatic", "tuned"])
def test_predictors_are_in_inference_mode(jb, variant):
    """compare's predictors: moving statistics and no dropout, as predict(), and they change no state."""
    spec = _spec(*STATEFUL_SPECS["both"])
    model, weights = _with_identity(jb, spec)
    x = np.random.default_rng(4).standard_normal((8, 28, 28, 1)).astype(np.float32)
    first = jb.make_predictor(model, variant)(x)
    assert np.array_equal(first, jb.make_predictor(model, variant)(x))
    assert_close(first, jb.predict(model, x), 1e-6, f"{variant} predictor vs predict")
    assert all(np.array_equal(v, weights[k]) for k, v in jb.get_weights(model, spec).items())


# -- the GPU path (runs where JAX sees a GPU; skips elsewhere) -----------------------------------------
@pytest.fixture
def jax_gpu(jb):
    import jax

    try:
        if jax.devices("gpu"):
            return jb
    except RuntimeError:  # no GPU backend in this jaxlib
        pass
    pytest.skip("no GPU visible to JAX")


@pytest.mark.gpu
def test_gpu_logits_match_the_numpy_reference(jax_gpu, spec):
    from tests.helpers import assert_gpu_logits_match_reference

    assert_gpu_logits_match_reference(jax_gpu, spec, "JAX on the GPU vs NumPy")


@pytest.mark.gpu
def test_gpu_tuned_steps_match_cpu(jax_gpu, spec):
    """The tuned loop with data resident on the GPU trains like the same loop on the CPU."""
    from twincnn import data

    ds = data.load()
    x, y = ds.images("train")[:3200], ds.labels("train")[:3200]
    weights = {}
    for device in ("cpu", "cuda"):
        model = jax_gpu.build(spec, seed=0, device=device)
        jax_gpu.set_weights(model, spec, initial_weights(spec, 0))
        trainer = jax_gpu.make_trainer(model, spec, variant="tuned", device=device)
        trainer.set_data(x, y)
        trainer.train_epoch(np.arange(128), 64)
        trainer.sync()
        weights[device] = jax_gpu.get_weights(trainer.model, spec)
    assert_close(weights["cuda"], weights["cpu"], 10 * STEP_ATOL, "JAX tuned on the GPU vs the CPU after 2 steps")


@pytest.mark.equivalence
def test_epoch_scan_trains_like_one_step_at_a_time(jb):
    """The GPU's tuned loop (full batches in one lax.scan, the partial batch after it) on the CPU: the same
    weights, moving statistics and mean loss as a dispatch per step, and progress reported up to the last
    step it reached. A transposed (steps, batch) reshape, a dropped partial batch or a lost BatchNorm update fails it."""
    from twincnn.spec import batchnorm, dense, dropout

    spec = _spec((6, 6, 1), {**CONV, "filters": 4}, batchnorm(momentum=0.5), {"type": "flatten"}, dropout(0.3),
                 dense(10))
    rng = np.random.default_rng(0)
    x, y = rng.random((400, 6, 6, 1), dtype=np.float32), rng.integers(0, 10, 400)
    order = rng.permutation(400)[:5 * 16 + 7]  # 5 full batches of 16 and a partial one
    results = {}
    for scan in (False, True):
        model = jb.build(spec, seed=0)
        jb.set_weights(model, spec, initial_weights(spec, 0))
        trainer = jb.make_trainer(model, spec, variant="tuned", epoch_scan=scan)
        trainer.set_data(x, y)
        progress = []
        loss = trainer.train_epoch(order, 16, progress.append)
        trainer.sync()
        results[scan] = loss, jb.get_weights(trainer.model, spec), progress
    assert results[False][2] == [1, 2, 3, 4, 5, 6] and results[True][2] == [5, 6]  # the scan reports once
    assert abs(results[True][0] - results[False][0]) <= 1e-6, (results[True][0], results[False][0])
    assert unidentified_weights(spec) == {"conv1/bias", "bn1/moving_mean"}
    m = assert_trained_alike(results[True][1], results[False][1], spec, len(results[False][2]),
                             "epoch in one scan vs a step at a time")
    print(f"JAX epoch in one scan vs a step at a time, 6 steps: {m}")


@pytest.mark.parametrize("scan", [False, True], ids=["step", "epoch scan"])
def test_tuned_loop_compiles_once(jb, spec, scan):
    """A second compilation would land in a timed steady-state epoch (an uncommitted Adam step count once
    made the second call of the step, and the second epoch's scan, compile again)."""
    x = np.random.default_rng(0).random((128, 28, 28, 1), dtype=np.float32)
    model = jb.build(spec, seed=0)
    jb._tuned_programs.cache_clear()  # trainers share their jitted programs: this one's compilations alone
    trainer = jb.make_trainer(model, spec, variant="tuned", epoch_scan=scan)
    trainer.set_data(x, np.arange(128) % 10)
    for _ in range(3):
        trainer.train_epoch(np.arange(128), 64)
    compiled = trainer._epoch if scan else trainer._step
    assert compiled._cache_size() == 1


def test_trainers_of_one_network_and_optimizer_share_their_compiled_step(jb, spec):
    """A second model of the same spec (any seed) trains without compiling again; another optimizer does not
    share the program."""
    trainers = [jb.make_trainer(jb.build(spec, seed=seed), spec, variant="tuned", **adam)
                for seed, adam in ((0, {}), (1, {}), (0, {"adam": "native"}))]
    assert trainers[0]._step is trainers[1]._step and trainers[2]._step is not trainers[0]._step


TILED_POOLS = {  # input size, pool layer, whether its windows tile the input (the tuned plan reshapes those)
    "2x2 on 18": (18, {"type": "maxpool2d", "pool_size": 2}, True),
    "2x2 on 17, last row dropped": (17, {"type": "maxpool2d", "pool_size": 2}, True),
    "3x3 stride 3 on 17": (17, {"type": "maxpool2d", "pool_size": 3}, True),
    "2x3 on 18": (18, {"type": "maxpool2d", "pool_size": [2, 3]}, True),
    "2x2 stride 1": (18, {"type": "maxpool2d", "pool_size": 2, "strides": 1}, False),
    "3x3 stride 2 same": (17, {"type": "maxpool2d", "pool_size": 3, "strides": 2, "padding": "same"}, False),
}


@pytest.mark.equivalence
@pytest.mark.parametrize("case", TILED_POOLS)
def test_tuned_plan_is_the_same_function(jb, case):
    """The tuned variant's reshaped max-pools give the spec's logits and gradients, on data with exact ties
    (a blank border, ReLU zeros) where the gradient must go to the first maximal cell as max_pool's does;
    pools whose windows do not tile the input are left as they are."""
    from tests.helpers import GRAD_ATOL, LOGIT_ATOL
    from twincnn.spec import dense
    from twincnn.weights import random_weights

    size, pool, tiled = TILED_POOLS[case]
    # A blank margin wider than the kernel: every 3x3 patch there is zero, so whole pooling windows tie at
    # relu(bias), a positive value for some filters, where the gradient must go to the first cell only.
    spec = _spec((size, size, 1), {**CONV, "activation": "relu"}, pool, {"type": "flatten"}, dense(10))
    rng = np.random.default_rng(0)
    x = np.pad(rng.random((32, size - 8, size - 8, 1), dtype=np.float32), ((0, 0), (4, 4), (4, 4), (0, 0)))
    y = rng.integers(0, 10, 32)
    model = jb.build(spec, seed=0)
    jb.set_weights(model, spec, random_weights(spec, 0))
    logits, (loss, grads) = jb.predict(model, x), jb.loss_and_grads(model, spec, x, y)
    model.use_tuned_plan()
    assert [kind for _, kind, *_ in model.plan].count("maxpool2d_tiled") == int(tiled)
    assert_close(jb.predict(model, x), logits, LOGIT_ATOL, f"{case}: tuned plan logits")
    tuned_loss, tuned_grads = jb.loss_and_grads(model, spec, x, y)
    assert abs(tuned_loss - loss) <= LOGIT_ATOL
    assert_close(tuned_grads, grads, GRAD_ATOL, f"{case}: tuned plan gradients")


def _tied_windows(rng):
    """(16, 8, 8, 3) pool inputs whose 2x2 windows hold exact ties (a blank background), near ties one ulp
    apart in either order, and distinct values, so the first maximal cell of a window is the cell where a
    one-ulp rounding of the layer below would move it."""
    x = rng.standard_normal((16, 8, 8, 3)).astype(np.float32)
    x[:, :4, :4] = 0.25  # exact ties: whole windows equal
    up = np.nextafter(np.float32(0.5), np.float32(1))
    x[:, 4:, :4:2] = 0.5
    x[:, 4:, 1:4:2] = up  # near ties: the later cell one ulp higher
    x[:, :4, 4::2] = up
    x[:, :4, 5::2] = 0.5  # the earlier cell one ulp higher
    return x


@pytest.mark.equivalence
def test_tiled_pool_gradient_is_max_pools_on_exact_and_near_ties(jb):
    """The tuned plan's pool gradient, jitted as in a training step (an affine before it whose scale and
    shift take gradients through the fused backward, a dropout-like mask after it), equals max_pool's
    exactly on exact and one-ulp ties. tox -e isa runs it with XLA capped at AVX2 and at SSE4.2."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    rng = np.random.default_rng(0)
    x, w = _tied_windows(rng), rng.standard_normal((16, 4, 4, 3)).astype(np.float32)
    keep = rng.random((16, 4, 4, 3)) < 0.6

    def loss(pool, x, scale, shift):
        return jnp.sum(jnp.where(keep, pool(x * scale + shift) / 0.6, 0) * w)  # scale 1, shift 0: x exactly

    pools = {"tiled": lambda h: jb._tiled_max_pool(h, (2, 2)), "max_pool": lambda h: nnx.max_pool(h, (2, 2), (2, 2))}
    grads = {name: [np.asarray(g) for g in jax.jit(jax.grad(functools.partial(loss, pool), argnums=(0, 1, 2)))(
        x, np.float32(1), np.float32(0))] for name, pool in pools.items()}
    chosen = (grads["max_pool"][0] != 0).reshape(16, 4, 2, 4, 2, 3).sum(axis=(2, 4))
    assert (chosen[keep] == 1).all(), "max_pool's gradient must reach exactly one cell of each kept window"
    # each input cell receives one product: exactly equal; scale and shift sum 768 of them in an order the
    # fusion picks, so rounding of that sum is allowed (a misrouted window moves it by ~|w| ~ 1)
    assert_close(grads["tiled"][0], grads["max_pool"][0], 0.0, "tiled max-pool vs max_pool: input gradient")
    for name, tiled, reference in zip(("scale", "shift"), grads["tiled"][1:], grads["max_pool"][1:]):
        assert_close(tiled, reference, scaled(GRAD_ATOL, reference), f"tiled vs max_pool: gradient of the {name}")


@pytest.mark.equivalence
def test_tuned_plan_trains_the_spec_plans_gradient_under_jit(jb, mnist):
    """conv -> BatchNorm -> tiled max-pool -> dropout, the gradient jitted as a training step computes it:
    the same as the spec's plan. XLA's fused backward of this chain once gave a conv gradient off by 0.28
    at AVX2 (exact at SSE4.2), while every part checked alone was right."""
    import jax.numpy as jnp
    from flax import nnx

    spec = _spec(*STATEFUL_SPECS["both"])
    x, y = jnp.asarray(mnist.images("train")[:64]), jnp.asarray(mnist.labels("train")[:64])
    grads = {}
    for tuned in (False, True):
        model = jb.build(spec, seed=0)
        jb.set_weights(model, spec, initial_weights(spec, 0))
        model.use_tuned_plan(tuned)
        _, g = nnx.jit(nnx.value_and_grad(jb._loss))(model, x, y)
        grads[tuned] = {f"{layer}/{attr}": np.asarray(v.get_value()) for layer in ("conv1", "bn1", "fc1")
                        for attr, v in g[layer].items()}
    loose = {k for k in unidentified_weights(spec) if k in grads[True]}
    assert loose == {"conv1/bias"}  # its gradient is rounding: compared at the size of rounding
    m = assert_close({k: v for k, v in grads[True].items() if k not in loose},
                     {k: v for k, v in grads[False].items() if k not in loose}, GRAD_ATOL, "tuned vs spec plan, jitted")
    print(f"JAX tuned plan vs spec plan, jitted gradients through BatchNorm and dropout: {m}")
    assert_close(grads[True]["conv1/bias"], grads[False]["conv1/bias"], 1e-5, "conv1/bias (rounding only)")
