"""The JAX twin's own parts: Keras's Adam in optax, tuned = idiomatic, partial batches, thread setting, files."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import STEP_ATOL, assert_close
from tests.test_keras_adam import ADAM_ATOL, LR, run_keras, run_keras_adam_in_torch, start_and_gradients
from twincnn.weights import initial_weights

pytestmark = pytest.mark.jax


@pytest.fixture(scope="module")
def jb():
    from conftest import require

    return require("jax")


def run_keras_adam_in_optax(jb, start, steps):
    import jax.numpy as jnp
    import optax

    tx = jb.keras_adam(LR)
    params = [jnp.asarray(w) for w in start]
    state = tx.init(params)
    for grads in steps:
        updates, state = tx.update([jnp.asarray(g) for g in grads], state, params)
        params = optax.apply_updates(params, updates)
    return {f"w{i}": np.asarray(p) for i, p in enumerate(params)}


def test_optax_keras_adam_matches_keras_over_twelve_steps(jb):
    from conftest import require

    tfb = require("tensorflow")
    start, steps = start_and_gradients()
    expected = run_keras(tfb.keras, tfb.tf, start, steps)
    moved = max(np.abs(expected[k] - w).max() for k, w in zip(expected, start))
    assert moved > 100 * ADAM_ATOL, f"weights moved only {moved:.3g}: the comparison would prove nothing"
    m = assert_close(run_keras_adam_in_optax(jb, start, steps), expected, ADAM_ATOL,
                     f"keras_adam (optax) vs keras.optimizers.Adam, {len(steps)} steps")
    print(f"optax keras_adam vs Keras after {len(steps)} steps: {m}")


def test_optax_keras_adam_matches_torch_keras_adam(jb):
    from conftest import require

    tb = require("torch")
    start, steps = start_and_gradients(seed=1)
    m = assert_close(run_keras_adam_in_optax(jb, start, steps), run_keras_adam_in_torch(tb, start, steps),
                     ADAM_ATOL, "keras_adam (optax) vs KerasAdam (PyTorch)")
    print(f"optax keras_adam vs PyTorch KerasAdam after {len(steps)} steps: {m}")


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


def test_tuned_step_is_the_idiomatic_step(jb, spec, mnist):
    """Pure jit with donated buffers vs nnx.Optimizer + nnx.jit: the same update, partial batch included."""
    x, y = mnist.images("train")[:200], mnist.labels("train")[:200]
    batches = [np.arange(0, 64), np.arange(64, 128), np.arange(128, 160)]  # the last one partial: 32 rows
    tuned, tuned_losses = _trained(jb, spec, "tuned", x, y, batches)
    plain, plain_losses = _trained(jb, spec, "idiomatic", x, y, batches)
    assert tuned_losses == pytest.approx(plain_losses, abs=1e-6)
    moved = max(np.abs(plain[k] - w).max() for k, w in initial_weights(spec, 0).items())
    assert moved > 100 * STEP_ATOL, f"three steps moved the weights by only {moved:.3g}"
    assert_close(tuned, plain, STEP_ATOL, "tuned vs idiomatic JAX weights after 3 steps")


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
    from conftest import require

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
