"""Reference comparison in the tinygrad/micrograd style: one stated tolerance, the worst element on failure."""

import os

import numpy as np
import pytest

from twincnn import backends

from twincnn.weights import worst_mismatch

# Stated tolerances (float32). Why these numbers:
# - LOGIT_ATOL: both twins compute the same sums in float32 but in different orders (oneDNN vs Eigen
#   blocking); observed max |Δ| is ~3e-8 on unit-scale logits and ~1e-6 on trained logits of size ~30,
#   i.e. a few ulps. 1e-5 is ten times the worst seen and still a hundred times smaller than any
#   layout bug (a wrong flatten order or transpose gives |Δ| ~ 0.1..10).
LOGIT_ATOL = 1e-5
# - GRAD_ATOL: gradients of the mean loss on one batch are ~1e-2 in size; observed max |Δ| ~2e-8.
GRAD_ATOL = 1e-6
# - STEP_ATOL: one Adam step moves every weight by ~lr=1e-3 times m/(sqrt(v)+eps); where a gradient is
#   tiny (near eps) rounding differences are amplified, observed ~3e-7. 1e-5 is 1 % of the step size.
STEP_ATOL = 1e-5


def assert_close(actual, expected, atol, what):
    """Fail with the worst mismatch: where, both values, the difference."""
    m = worst_mismatch(actual, expected)
    assert m.max_abs <= atol, f"{what}: {m} exceeds the stated tolerance {atol:g}"
    return m


def unidentified_weights(spec) -> set[str]:
    """Weights that no loss determines: the bias of a layer whose output feeds a BatchNorm directly (no
    activation between), and that BatchNorm's moving mean. In training mode BatchNorm subtracts the batch
    mean, so the loss does not depend on such a bias: its gradient is float32 rounding (~1e-7, the size of
    Adam's eps), and each Adam step moves it by up to lr in a direction rounding decides. Two compilations of
    one step (another instruction set, a fused or scanned loop) then disagree there by up to 2 lr per step,
    and the moving mean, which follows the bias, by as much."""
    found = set()
    for layer, after in zip(spec.info, spec.info[1:]):
        if "bias" in layer.weight_shapes and layer.activation is None and after.type == "batchnorm":
            found |= {f"{layer.name}/bias", f"{after.name}/moving_mean"}
    return found


def assert_trained_alike(actual, expected, spec, steps, what, atol=STEP_ATOL, lr=1e-3):
    """Weights after ``steps`` Adam steps of two programs: within ``atol`` where the loss determines them;
    within 2 lr per step (all that can be said) for unidentified_weights(spec)."""
    loose = unidentified_weights(spec) & set(expected)
    m = assert_close({k: v for k, v in actual.items() if k not in loose},
                     {k: v for k, v in expected.items() if k not in loose}, atol, what)
    for key in sorted(loose):
        assert_close(actual[key], expected[key], 2 * lr * steps,
                     f"{what}, {key} (no loss determines it; Adam moves it by rounding)")
    return m


def assert_same_argmax(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    differ = np.flatnonzero(a.argmax(1) != b.argmax(1))
    assert differ.size == 0, (
        f"{what}: argmax differs on {differ.size} of {len(a)} rows; first at row {differ[0]}: "
        f"{a[differ[0]].tolist()} vs {b[differ[0]].tolist()}")
# - NORM_GRAD_ATOL: gradients that flow back through BatchNorm's batch statistics (training mode). Keras's
#   float32 backward is the least exact here: 4.5e-6 from a float64 reference on gradients of size ~0.8 (PyTorch
#   2.3e-7, JAX ~3e-7). 2e-5 is four times Keras's error and still twenty times below the effect of normalising
#   with the unbiased instead of the biased variance (~4e-4 on the same gradients).
NORM_GRAD_ATOL = 2e-5
# - MOVING_STAT_ATOL: BatchNorm's moving mean and variance after a training step (values ~1): the batch
#   statistics are float32 sums over the batch in another order (~1e-7). The unbiased variance that stock
#   torch.nn.BatchNorm2d keeps differs by (1 - momentum) * var / (N - 1), ~1e-4 here: far outside it.
MOVING_STAT_ATOL = 1e-6
# - DROPOUT_SIGMAS: dropout is tested in expectation; the kept fraction and the mean of the scaled output may
#   stray from 1 - rate and the input by this many binomial standard deviations (a false alarm about once
#   in 1.7 million runs), computed from the number of samples each test draws.
DROPOUT_SIGMAS = 5.0


def scaled(atol, values):
    """``atol`` times the size of ``values`` where they are larger than 1: float32 error grows with them."""
    return atol * max(1.0, float(np.abs(values).max()))


def built_twins(pair, spec, weights, seed=None) -> list:
    """Each backend of ``pair``'s twin of ``spec``, all holding the same canonical ``weights``."""
    models = []
    for backend in pair:
        model = backend.build(spec, seed=seed)
        backend.set_weights(model, spec, weights)
        models.append(model)
    return models


def assert_twins_agree(pair, spec, x, y=None, atol=LOGIT_ATOL, grad_atol=GRAD_ATOL, weights=None, what=""):
    """The twins of ``pair`` holding the same weights (``weights``, or random ones) give the same logits on ``x``
    within ``atol`` (scaled by the logits' size) and, given labels ``y``, the same training-mode loss and
    gradients within ``grad_atol``; fails with the worst mismatch, and returns the mismatches found."""
    from twincnn.weights import random_weights

    a, b = pair
    label = f"{b.NAME} vs {a.NAME}" + (f", {what}" if what else "")
    model_a, model_b = built_twins(pair, spec, random_weights(spec, 0) if weights is None else weights)
    logits_a, logits_b = a.predict(model_a, x), b.predict(model_b, x)
    assert logits_a.shape == logits_b.shape == (len(x), spec.num_classes), label
    found = [assert_close(logits_b, logits_a, scaled(atol, logits_a), f"{label}: logits")]
    if y is not None:
        (loss_a, grads_a), (loss_b, grads_b) = (a.loss_and_grads(model_a, spec, x, y),
                                                b.loss_and_grads(model_b, spec, x, y))
        assert abs(loss_a - loss_b) <= scaled(atol, loss_a), f"{label}: loss {loss_a} vs {loss_b}"
        found.append(assert_close(grads_b, grads_a, grad_atol, f"{label}: gradients"))
    return found


# A variance computed as E[h²]-mean² in float32 is off by about eps32·E[h²], a relative eps32·E[h²]/Var(h) of
# itself: the tolerance of a twin whose LayerNorms compute it so (Keras on PyTorch) grows by that times the logits'
# size, times ONE_PASS_FACTOR for its square root and the layers after it.
ONE_PASS_FACTOR = 4.0


def one_pass_moments(module) -> bool:
    """Whether the backend module says its normalisations compute the variance as E[x²]-mean² (a Keras twin)."""
    return bool(getattr(module, "one_pass_moments", lambda: False)())


def one_pass_allowance(spec, weights, x) -> float:
    """ONE_PASS_FACTOR·eps32·max E[h²]/(Var h + ε) over the rows each LayerNorm of ``spec`` normalises, on ``x``."""
    from twincnn import reference

    outputs, worst = reference.activations(spec, weights, x), 0.0
    for info in spec.info:
        if info.type == "layernorm":
            h = outputs[info.inputs[0]].astype(np.float64).reshape(len(x), -1, outputs[info.inputs[0]].shape[-1])
            ratio = (h ** 2).mean(-1) / (h.var(-1) + info.config["epsilon"])
            worst = max(worst, float(ratio.max()))
    return ONE_PASS_FACTOR * float(np.finfo(np.float32).eps) * worst


def assert_twin_matches_reference(backend, spec, x, weights, what, device="cpu", atol=None):
    """The twin holding ``weights`` gives the NumPy reference forward pass's logits on ``x`` within ``atol``
    (default: LOGIT_ATOL scaled by the logits' size, plus one_pass_allowance where the twin computes its LayerNorms'
    variance in one pass); fails with the worst mismatch."""
    from twincnn import reference

    model = backend.build(spec, seed=0, device=device)
    backend.set_weights(model, spec, weights)
    expected = reference.forward(spec, weights, x)
    logits = backend.predict(model, x)
    assert logits.shape == expected.shape, f"{what}: logits of shape {logits.shape}, the reference's {expected.shape}"
    if atol is None:
        atol = scaled(LOGIT_ATOL, expected)
        if on_module(backend, one_pass_moments):
            atol += one_pass_allowance(spec, weights, x) * max(1.0, float(np.abs(expected).max()))
    return assert_close(logits, expected, atol, f"{what}: logits")


def assert_gpu_logits_match_reference(backend, spec, what):
    """The twin on the GPU against the NumPy forward pass on 1,000 test images, random weights: full
    float32 (TF32 or bf16 passes would move the logits by ~1e-4)."""
    from twincnn import data
    from twincnn.weights import random_weights

    assert_twin_matches_reference(backend, spec, data.load().images("test")[:1000], random_weights(spec, 0), what,
                                  device="cuda", atol=LOGIT_ATOL)


def shell_environment() -> dict:
    """This process's environment as a user's shell would give a fresh process: without the log variables
    twincnn sets while quieting the frameworks, nor TWINCNN_VERBOSE (which in-process CLI runs leave behind)."""
    set_by_twincnn = {"TWINCNN_VERBOSE"} | {name for entry in backends.BACKENDS.values()
                                           for name in entry.quiet_environment}
    return {key: value for key, value in os.environ.items() if key not in set_by_twincnn}


def reference_pairs() -> list[tuple[str, str]]:
    """Each other twin against the reference twin (the first registered), never every pair: agreement with one
    reference implies agreement with each other within twice the tolerance, and N frameworks make N - 1 pairs,
    not N(N - 1)/2. Read from the registry when called (a plugin may have registered another)."""
    names = list(backends.BACKENDS)
    return [(names[0], other) for other in names[1:]]


def layered_twins() -> set[str]:
    """The twins on another framework's engine (Keras on JAX and on PyTorch): they build their models with the
    Keras twin's code, whose numbers the default pass holds to the references; theirs (the `equivalence` tests)
    cost minutes through their processes of their own, so they run in the slow pass, which CI runs. The default
    pass still tests them: interface, files, summary, check against a Keras model, compare."""
    return {name for name, entry in backends.BACKENDS.items() if entry.runs_on}


def stock_adam_is_keras(name: str) -> bool:
    """Whether the framework's own Adam (adam='native') is Keras's: so for a twin of Keras on any backend."""
    return "keras" in backends.BACKENDS[name].model_packages


def require(name: str):
    """The backend module (its functions answered by a process of its own where it cannot run in this one:
    backends.twin), or a skip that says how to install it."""
    try:
        return backends.twin(name)
    except backends.FrameworkMissing as exc:
        pytest.skip(str(exc))


def on_module(framework, function):
    """``function(the backend module)`` run where the module is: in this process, or in the twin's own
    (backends/isolated.py; ``function`` then crosses by name: a module-level function)."""
    from twincnn.backends.isolated import TwinProcess

    return framework.apply(function) if isinstance(framework, TwinProcess) else function(framework)


# Where the kernel benchmarks keep their minima for the lower-bound summary (tests/benchmarks/conftest.py).
KERNEL_MINIMA = pytest.StashKey[dict]()


def record_kernel(config, benchmark, framework: str, dispatch: bool = False) -> None:
    """Keep the minimum of a kernel benchmark that really timed (not under --benchmark-disable): some kernels
    are bimodal, and a lower bound adds what each kernel can take, not a median between two modes."""
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(stats, "stats", None) is None:
        return
    entry = config.stash.setdefault(KERNEL_MINIMA, {}).setdefault(framework, {"kernels": [], "dispatch": None})
    if dispatch:
        entry["dispatch"] = stats.stats.min
    else:
        entry["kernels"].append(stats.stats.min)


# -- Keras's Adam, run by Keras and by the twins' reproductions on fixed gradients --------------------
LR = 1e-3
SHAPES = [(6, 40), (40,)]  # two tensors: the update runs over a list of parameters
# One scale per step: large, small, near Keras's epsilon (1e-7) and below it.
SCALES = [1.0, 1e-2, 10.0, 1e-7, 1.0, 3e-1, 1e-4, 5.0, 1e-8, 1.0, 2.0, 1e-3]
# Stated tolerance: weights are N(0, 1), |w| < 4, where one float32 ulp is 2.4e-7; observed max |Δ| after
# 12 steps is 1.9e-9. Swapped betas, eps 1e-8 or 1e-6, or beta_2 = 0.99 each move some weight by 2e-3 to
# 3.4e-3, a thousand times the tolerance.
ADAM_ATOL = 1e-6


def start_and_gradients(seed=0):
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    steps = []
    for scale in SCALES:
        grads = []
        for shape in SHAPES:
            g = rng.standard_normal(shape) * scale
            g.flat[::7] *= 1e-6  # some elements stay near or below epsilon at every step
            g.flat[::11] = 0.0   # and some never get a gradient
            grads.append(g.astype(np.float32))
        steps.append(grads)
    return start, steps


def run_keras(keras, tf, start, steps):
    variables = [tf.Variable(w) for w in start]
    optimizer = keras.optimizers.Adam(learning_rate=LR)  # Keras 3 defaults: 0.9, 0.999, eps 1e-7
    for grads in steps:
        optimizer.apply_gradients([(tf.constant(g), v) for g, v in zip(grads, variables)])
    return {f"w{i}": v.numpy() for i, v in enumerate(variables)}


def run_keras_adam_in_torch(tb, start, steps, capturable=False):
    import torch

    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in start]
    optimizer = tb.KerasAdam(params, lr=LR, capturable=capturable)
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g)
        optimizer.step()
    return {f"w{i}": p.detach().numpy().copy() for i, p in enumerate(params)}


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


def frameworks(count, distinct=False):
    """`count` installed native frameworks (what `compare` runs by default), the quickest to start first. Where fewer
    are installed, the list repeats them (A/A runs), unless the test needs ``distinct`` ones: then it is skipped,
    saying why."""
    names = sorted(backends.natives(), key=lambda n: n != "torch")
    if not names:
        pytest.skip("no framework installed: pip install 'twincnn[all]'")
    if distinct and len(names) < count:
        pytest.skip(f"needs {count} different frameworks; installed: {', '.join(names)} (pip install 'twincnn[all]')")
    return (names * count)[:count] if len(names) < count else names[:count]


def cpu_hogs(busy: float = 1.0, idle: float = 0.0, count: int | None = None) -> list:
    """Start ``count`` processes (default: one per usable CPU) that each spin for ``busy`` seconds, then
    sleep ``idle`` seconds, forever: steady (idle 0) or bursty competing load. Stop them with stop_all()."""
    import subprocess
    import sys

    from twincnn import machine

    code = (f"import time\nwhile True:\n    end = time.time() + {busy}\n    while time.time() < end:\n        pass\n"
            f"    time.sleep({idle})\n")
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count or machine.usable_cpus())]


def stop_all(processes) -> None:
    for process in processes:
        process.kill()
        process.wait()


# A fourth framework for the registry tests, unlike the three: its twin is NumPy's reference forward pass on a
# dict of weights (no training), in a module of its own that is written to a folder of its own, so that no file
# of twincnn changes. Every twin's tests reach it through the registry alone.
FAKE_BACKEND_SOURCE = '''\
"""A fourth framework for tests: twincnn's NumPy reference as a twin that infers and never trains."""
import contextlib

import numpy as np

from twincnn import machine, reference, weightsfile
from twincnn.errors import UserError
from twincnn.weights import initial_weights

NAME = "fake"
NOTEBOOK_VALIDATION = False
NOTEBOOK_TIMING = ""


class Model:
    def __init__(self, spec, weights):
        self.spec, self.weights = spec, {k: np.array(v, np.float32) for k, v in weights.items()}


class Trainer:
    def __init__(self, *args, **kwargs):
        raise UserError("the fake framework does not train")

    def set_data(self, x, y): ...
    def step(self, idx): ...
    def train_epoch(self, order, batch_size, on_step=None, validation=None): ...
    def sync(self): ...
    def predict(self, x): ...
    def run(self, epochs, batch_size, order_for_epoch, hooks, validation=None): ...


def version():
    return np.__version__


def configure(threads=None):
    return {"intra_op_threads": 1}


def resolve_device(device="cpu"):
    if device != "cpu":
        raise UserError(f"the fake framework has no {device} device")
    return device


def build(spec, seed=None, device="cpu"):
    resolve_device(device)
    return Model(spec, initial_weights(spec, 0 if seed is None else seed))


def get_weights(model, spec):
    return {name: model.weights[name].copy() for name in spec.weight_shapes()}


def set_weights(model, spec, weights):
    model.weights = {name: np.array(weights[name], np.float32) for name in spec.weight_shapes()}


def predict(model, x, batch_size=1000):
    return reference.forward(model.spec, model.weights, x, batch_size)


def loss_and_grads(model, spec, x, y):
    raise UserError("the fake framework has no gradients")


def without_dropout(model):
    return contextlib.nullcontext()  # the reference's dropout passes its input through


def layer_summary(model, spec):
    outputs = reference.activations(spec, model.weights, np.zeros((1, *spec.input_shape), np.float32))
    return [(info.name, outputs[info.name].shape[1:],
             sum(int(np.prod(shape)) for name, shape in spec.weight_shapes().items()
                 if name.split("/")[0] == info.name)) for info in spec.info]


def make_trainer(model, spec, **kwargs):
    return Trainer(model, spec, **kwargs)


def make_predictor(model, variant="idiomatic"):
    return lambda x: predict(model, x)


def isa():
    return machine.cpu_isa()


def environment():
    return {"framework": NAME, "version": version(), "isa": isa()}


def audit_defaults():
    return {"gelu": "exact (erf), as the reference"}


def load_file(path, spec):
    weights, spec = weightsfile.load(path, spec)
    return Model(spec, weights), spec


def save_file(model, spec, path):
    weightsfile.save(path, spec, get_weights(model, spec))
'''


def fake_registration(module: str):
    """The registry entry of the fake framework, whose module is ``module`` (and whose models are its classes)."""
    from twincnn.backends import Registration

    return Registration(module=module, package="numpy", extra="fake", label="Fake", aliases=("phony",),
                        file_formats={".fake": True}, model_packages=(module,))


def register(name: str, entry, setattr_=setattr) -> None:
    """Add ``entry`` to the registry (everything else about a framework is read from it at each call);
    ``setattr_`` is monkeypatch.setattr in a test (undone after it), plain setattr in a plugin."""
    from twincnn import backends

    setattr_(backends, "BACKENDS", {**backends.BACKENDS, name: entry})


def assert_reading_matches_reference(read, x, what):
    """A model read into a spec (its reader's object): its logits and every spec layer's output equal the NumPy
    reference's on the weights read from it, and its last layer's output is its logits."""
    from twincnn import reference

    weights = read.get_weights()
    logits = read.predict(x)
    assert_close(logits, reference.forward(read.spec, weights, x), scaled(LOGIT_ATOL, logits), f"{what}: logits")
    expected = reference.activations(read.spec, weights, x)
    got = read.activations(x)
    assert list(got) == [info.name for info in read.spec.info]
    for name, value in got.items():
        assert_close(value, expected[name], scaled(LOGIT_ATOL, expected[name]), f"{what}: {name} ({read.paths[name]})")
    assert_close(got[read.spec.info[-1].name], logits, scaled(LOGIT_ATOL, logits), f"{what}: last layer vs predict")


def draw_clear_of_kinks(spec, weights, draw, training: bool, tries: int = 30):
    """The first of draw(0), draw(1), ... (each an (x, y) batch) whose reference forward keeps KINK_MARGIN from
    every activation's kink; fails, naming the closest seen, when none of ``tries`` draws does."""
    from twincnn import reference

    closest = np.inf
    for seed in range(tries):
        x, y = draw(seed)
        distance = reference.kink_distance(spec, weights, x, training)
        if distance >= reference.KINK_MARGIN:
            return x, y
        closest = min(closest, distance)
    pytest.fail(f"no batch of {tries} keeps {reference.KINK_MARGIN:g} from a ReLU kink (closest {closest:.2g}); use a "
                f"smaller batch")


def _live_processes_where(field: int, value: int) -> list[int]:
    """The live (not zombie) processes whose /proc/PID/stat field ``field`` (counted after the command name,
    from 0) is ``value``."""
    from pathlib import Path

    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[field]) == value and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def session_processes(sid: int) -> list[int]:
    """The live processes of session ``sid`` (field 6 of /proc/PID/stat)."""
    return _live_processes_where(3, sid)


def child_processes(pid: int) -> list[int]:
    """The live children of process ``pid`` (field 4 of /proc/PID/stat: the parent's pid)."""
    return _live_processes_where(1, pid)


def environment_of(pid: int) -> dict:
    """The environment process ``pid`` started with, from /proc ({} once it has gone)."""
    from pathlib import Path

    try:
        text = Path(f"/proc/{pid}/environ").read_text()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in text.split("\0") if "=" in item)


def data_refusal(path, **options) -> str:
    """The one-line DataError that loading ``path`` raises."""
    from twincnn import data

    with pytest.raises(data.DataError) as err:
        data.load(path, **options)
    message = str(err.value)
    assert "\n" not in message
    return message
