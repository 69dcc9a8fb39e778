"""JAX twin: a Flax NNX module with layers named conv1.., fc1.. in NHWC, Flax's layouts being the canonical ones
(a depthwise kernel up to a reshape)."""

from __future__ import annotations

import functools
import inspect
import os
import platform
import re
from typing import NamedTuple

import numpy as np

# Read when JAX's runtime starts. A compare runs two workers side by side (both JAX in an A/A run); XLA's
# default of taking 75 % of the GPU's memory at start would fail the second. PyTorch allocates on demand too.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402, I001 -- the framework itself, not this module
import jax.numpy as jnp
import optax
from flax import nnx
from jax._src import xla_bridge  # the public API has no "is the runtime started?" query

from .. import machine
from ..errors import UserError
from ..spec import INPUT, Spec
from ..weights import check_layout
from .defaults import signature_default
from .interface import KERAS_ADAM_EPSILON, TrainerConfig
from .base import BaseTrainer, attributes_set

NAME = "jax"
# The notebook validated inside Keras fit's timing; a JAX loop does only what it says.
NOTEBOOK_VALIDATION = False
NOTEBOOK_TIMING = ""

# What configure() put in force: XLA's CPU client cannot be resized once created.
_THREADS = {"intra_op_threads": None, "how": "default: every CPU the process may use"}


def version() -> str:
    import flax

    return f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}"


def configure(threads: int | None = None) -> dict:
    """Set the CPU threads XLA uses; only possible before the first JAX operation starts the runtime.

    jax has no thread-count setting: XLA's CPU client sizes its thread pools from the CPUs the creating
    thread may run on. So the client is created while this thread is pinned to ``threads`` CPUs (the pool
    threads keep that set), then the pin is lifted. One thread also turns Eigen's multi-threading off.
    """
    if threads and not xla_bridge.backends_are_initialized():
        allowed = sorted(os.sched_getaffinity(0))
        chosen = set(allowed[:threads])
        if threads == 1:
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        os.sched_setaffinity(0, chosen)  # 0: this thread only; threads it starts inherit the set
        try:
            jax.devices()
        finally:
            os.sched_setaffinity(0, allowed)
        _THREADS.update(intra_op_threads=len(chosen),
                        how=f"XLA CPU client created on {len(chosen)} of {len(allowed)} CPUs")
    if _THREADS["intra_op_threads"] is None:
        _THREADS["intra_op_threads"] = len(os.sched_getaffinity(0))
    return {"intra_op_threads": _THREADS["intra_op_threads"], "inter_op_threads": None}  # None: XLA has no such setting


def resolve_device(device: str = "cpu") -> str:
    """The JAX platform for ``device``. 'cpu' leaves the runtime unstarted, so configure() may still follow."""
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; use cpu or cuda")
    if device == "cuda":
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:  # no GPU backend at all
            gpus = []
        if not gpus:
            raise UserError("--device cuda: this JAX sees no GPU (CPU-only jaxlib?); use --device cpu "
                            "or install jax[cuda12]")
        # float32 comparisons: XLA on GPUs would otherwise round matmul/conv inputs to TF32 or bf16.
        jax.config.update("jax_default_matmul_precision", "highest")
        return "gpu"
    return "cpu"


def _device(platform_name: str):
    """This process's first device of the platform (in a multi-process run jax.devices() lists every
    process's, and another's cannot hold this process's arrays)."""
    return jax.local_devices(backend=platform_name)[0]


# Keras's activations by name, each given every setting the spec fixes: jax.nn.gelu defaults to the tanh
# approximation (Keras's 'gelu' is exact), jax.nn.leaky_relu to slope 0.01.
_ACTIVATIONS = {
    "relu": lambda x, _: jax.nn.relu(x),
    "relu6": lambda x, _: jax.nn.relu6(x),
    "sigmoid": lambda x, _: jax.nn.sigmoid(x),
    "tanh": lambda x, _: jnp.tanh(x),
    "elu": lambda x, _: jax.nn.elu(x, alpha=1.0),
    "silu": lambda x, _: jax.nn.silu(x),
    "gelu": lambda x, _: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x, _: jax.nn.gelu(x, approximate=True),
    "leaky_relu": lambda x, slope: jax.nn.leaky_relu(x, negative_slope=slope),
}


def _activate(x, activation):
    name, slope = activation
    return _ACTIVATIONS[name](x, slope)


# Canonical weight name -> the attribute Flax keeps it under (the rest are the same: kernel, bias).
_FLAX_NAMES = {"gamma": "scale", "beta": "bias", "moving_mean": "mean", "moving_variance": "var"}


def _conv(info, channels, rngs, groups, dilation):
    """nnx.Conv with every setting from the spec; the spec's explicit padding pairs (Keras's 'same': the odd
    pixel after, over the dilated kernel), as nnx.Conv pads 'SAME' unless told. Kernel (kh, kw, in/groups, out),
    groups of consecutive output channels reading consecutive input channels, as in Keras."""
    cfg = info.config
    features = info.output_shape[-1]
    return nnx.Conv(channels, features, tuple(cfg["kernel_size"]), tuple(cfg["strides"]),
                    padding=tuple(map(tuple, info.padding)), kernel_dilation=tuple(dilation),
                    feature_group_count=groups, use_bias="bias" in info.weight_shapes, rngs=rngs)


def _tiled(x, window):
    """(N, H, W, C) -> (N, H', ph, W', pw, C): a view of the tiling windows (no copy); valid pooling drops
    the rows and columns that fill no window."""
    (ph, pw), (n, h, w, c) = window, x.shape
    return x[:, :h // ph * ph, :w // pw * pw].reshape(n, h // ph, ph, w // pw, pw, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))  # the window is static
def _tiled_max_pool(x, window):
    return _tiled(x, window).max(axis=(2, 4))


def _tiled_max_pool_fwd(x, window):
    out = _tiled_max_pool(x, window)
    return out, (x, out)


def _tiled_max_pool_bwd(window, saved, g):
    """The whole gradient to each window's first maximal cell in row-major order, as max_pool's
    select-and-scatter does (a reduce-max's own gradient would split it among tied cells), elementwise.
    The first maximal cell is the one of highest priority (ph*pw - its row-major index) among the maximal
    ones: a compare, a select and a max. Invariant: no cumulative sum over a boolean mask here; XLA's CPU
    code for one, fused into a BatchNorm's backward, gave wrong gradients at AVX2 (docs/equivalence.md)."""
    x, out = saved
    tiles = _tiled(x, window)
    n, h, ph, w, pw, c = tiles.shape
    priority = (ph * pw - jnp.arange(ph * pw, dtype=jnp.int32)).reshape(1, 1, ph, 1, pw, 1)
    score = jnp.where(tiles == out[:, :, None, :, None, :], priority, 0)
    first = score == score.max(axis=(2, 4), keepdims=True)
    dx = jnp.where(first, g[:, :, None, :, None, :], 0).reshape(n, h * ph, w * pw, c)
    return jnp.pad(dx, ((0, 0), (0, x.shape[1] - dx.shape[1]), (0, x.shape[2] - dx.shape[2]), (0, 0))),


_tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)


class TwinNet(nnx.Module):
    """The spec as an NNX module. ``plan`` holds only hashable static data, so jit caches key on it.

    ``train`` is an argument of every call, never a module flag: BatchNorm then uses batch statistics and
    updates its moving ones (nnx.BatchStat), Dropout draws a mask from its own seeded nnx.Rngs stream.
    """

    def __init__(self, spec: Spec, rngs: nnx.Rngs):
        plan = []
        for info in spec.info:
            cfg, kind, args = info.config, info.type, ()
            channels = info.input_shape[-1]
            if kind == "conv2d":
                layer = _conv(info, channels, rngs, cfg["groups"], cfg["dilation_rate"])
            elif kind == "depthwiseconv2d":  # one group per input channel; kernel (kh, kw, 1, in*multiplier)
                layer = _conv(info, channels, rngs, channels, (1, 1))
            elif kind == "dense":
                layer = nnx.Linear(channels, cfg["units"], use_bias="bias" in info.weight_shapes, rngs=rngs)
            elif kind == "batchnorm":  # momentum in Keras's sense; two-pass (biased) batch variance, as Keras
                layer = nnx.BatchNorm(channels, use_running_average=None, axis=-1, momentum=cfg["momentum"],
                                      epsilon=cfg["epsilon"], use_fast_variance=False, rngs=rngs)
            elif kind == "layernorm":  # over the last axis: channels per position, or a flat vector
                layer = nnx.LayerNorm(channels, epsilon=cfg["epsilon"], reduction_axes=-1, feature_axes=-1,
                                      use_fast_variance=False, rngs=rngs)
            elif kind == "dropout":  # inverted dropout; masks from the 'dropout' stream, advanced per call
                layer = nnx.Dropout(cfg["rate"], deterministic=None, rngs=rngs)
            else:
                layer = None
            if kind in ("maxpool2d", "avgpool2d"):
                # Explicit padding and strides (max_pool's default to 1); padded cells never win a max,
                # and an average divides by the real cells only (count_include_pad=False), as Keras's 'same'.
                args = (tuple(cfg["pool_size"]), tuple(cfg["strides"]), tuple(map(tuple, info.padding)))
            elif kind == "zeropad2d":
                args = ((0, 0), *map(tuple, info.padding), (0, 0))
            if layer is not None:
                setattr(self, info.name, layer)
            activation = cfg.get("activation")
            plan.append((info.name, kind, args,
                         None if activation is None else (activation, cfg.get("negative_slope")), info.inputs))
        self.plan = self.spec_plan = tuple(plan)
        self.output = spec.info[-1].name

    def use_tuned_plan(self, tuned: bool = True) -> None:
        """The tuned variant's plan: the same function and gradients, computed faster on XLA's CPU backend.
        A max-pool whose windows tile the input (window = strides, no padding) is a reshape and a max, with
        an elementwise gradient to each window's first maximal cell, as max_pool's (XLA's select-and-scatter
        is slow on the CPU; measurements in docs/benchmarks.md). A plain reduce-max gradient would split it
        among tied cells, which MNIST's blank background makes common. tuned=False: the spec's."""
        if not tuned:
            self.plan = self.spec_plan
            return
        self.plan = tuple((name, "maxpool2d_tiled", args[0], activation, inputs)
                          if kind == "maxpool2d" and args[0] == args[1] and not any(any(p) for p in args[2])
                          else (name, kind, args, activation, inputs)
                          for name, kind, args, activation, inputs in self.spec_plan)

    def __call__(self, x, train: bool = False, shapes=None):
        outputs = {INPUT: x}
        for name, kind, args, activation, inputs in self.plan:
            x = outputs[inputs[0]]
            if kind in ("conv2d", "depthwiseconv2d", "dense", "layernorm"):
                x = getattr(self, name)(x)
            elif kind == "batchnorm":
                x = getattr(self, name)(x, use_running_average=not train)
            elif kind == "dropout":
                x = getattr(self, name)(x, deterministic=not train)
            elif kind == "maxpool2d":
                x = nnx.max_pool(x, args[0], strides=args[1], padding=args[2])
            elif kind == "maxpool2d_tiled":
                x = _tiled_max_pool(x, args)
            elif kind == "avgpool2d":
                x = nnx.avg_pool(x, args[0], strides=args[1], padding=args[2], count_include_pad=False)
            elif kind == "globalavgpool2d":
                x = x.mean(axis=(1, 2))
            elif kind == "flatten":  # NHWC reshaped: rows in (H, W, C) order, the canonical one
                x = x.reshape(x.shape[0], -1)
            elif kind == "zeropad2d":
                x = jnp.pad(x, args)
            elif kind == "add":
                x = functools.reduce(jnp.add, [outputs[n] for n in inputs])
            elif kind == "concatenate":  # NHWC: channels are the last axis
                x = jnp.concatenate([outputs[n] for n in inputs], axis=-1)
            elif kind != "activation":
                raise ValueError(f"{name}: the JAX twin has no layer type {kind!r}")
            if activation is not None:
                x = _activate(x, activation)
            outputs[name] = x
            if shapes is not None:
                shapes[name] = tuple(x.shape[1:])
        return outputs[self.output]


def build(spec: Spec, seed: int | None = None, device: str = "cpu") -> TwinNet:
    """The twin with Flax's own initialisers (LeCun-normal kernels, zero biases); set_weights() for shared ones.
    Dropout masks come from a stream of their own, seeded from ``seed`` too: the same seed, the same masks."""
    graphdef, init = _initialiser(spec, repr(spec.info))
    with jax.default_device(_device(resolve_device(device))):
        return nnx.merge(graphdef, init(0 if seed is None else seed))


@functools.lru_cache(maxsize=256)  # more than a test file's networks: cycling through more misses every time
def _initialiser(spec: Spec, worked_out: str):
    """(graphdef, compiled initialisers taking the seed) of ``spec``'s twin: building it again, under any seed,
    compiles nothing. The twin is built from the spec's worked-out layers (padding, shapes), so their text
    ``worked_out`` is in the key too. The initialisers are one program at XLA's lowest optimisation level:
    optimising costs seconds per new set of shapes (random-bit generation compiles slowly) and saves nothing
    in a program run once per model."""
    def make(seed):  # seed: an int, or a traced one (jax.random.key(seed) is what nnx.Rngs makes of an int)
        key = jax.random.key(seed)
        return TwinNet(spec, nnx.Rngs(params=key, dropout=key))
    graphdef = nnx.graphdef(nnx.eval_shape(make, 0))
    return graphdef, jax.jit(lambda seed: nnx.state(make(seed)), compiler_options={"xla_backend_optimization_level": 0})


def _variables(model: TwinNet, spec: Spec):
    """(canonical name, canonical shape, (layer, Flax attribute), variable) in spec order; the variable is an
    nnx.Param, or an nnx.BatchStat for BatchNorm's moving statistics. Flax's layouts are the canonical ones
    up to a reshape: a depthwise kernel is (kh, kw, 1, in*multiplier) in Flax, (kh, kw, in, multiplier)
    canonically, in the same element order (output channel c*multiplier + m)."""
    for info in spec.param_layers:
        layer = getattr(model, info.name)
        for key, shape in info.weight_shapes.items():
            attr = _FLAX_NAMES.get(key, key)
            yield f"{info.name}/{key}", tuple(shape), (info.name, attr), getattr(layer, attr)


def get_weights(model: TwinNet, spec: Spec) -> dict[str, np.ndarray]:
    return {name: np.array(var.get_value()).reshape(shape) for name, shape, _, var in _variables(model, spec)}


def set_weights(model: TwinNet, spec: Spec, weights: dict) -> None:
    check_layout(spec, weights)
    for name, _, _, var in _variables(model, spec):
        old = var.get_value()
        value = np.asarray(weights[name], np.float32).reshape(old.shape)
        var.set_value(jax.device_put(value, next(iter(old.devices()))))


@nnx.jit
def _forward(model, x):
    return model(x)


def predict(model: TwinNet, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    out = [np.asarray(_forward(model, jnp.asarray(x[start:start + batch_size], jnp.float32)))
           for start in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _loss(model, x, y):
    """The training loss: in training mode (batch statistics, dropout), as a training step computes it."""
    return optax.softmax_cross_entropy_with_integer_labels(model(x, train=True), y).mean()


# One compiled program: run eagerly, every primitive of the backward pass compiles on its own, seconds per
# new network; the trainers' steps are compiled programs too.
_loss_and_grads = nnx.jit(nnx.value_and_grad(_loss))


def loss_and_grads(model: TwinNet, spec: Spec, x: np.ndarray, y: np.ndarray):
    """Mean sparse cross-entropy from logits on one batch, in training mode as Keras's and PyTorch's twins
    (moving statistics updated, a dropout mask drawn), and the canonical gradients of the trainable
    weights (nnx.Param: BatchNorm's moving statistics have none)."""
    loss, grads = _loss_and_grads(model, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32))
    return float(loss), {name: np.array(grads[layer][attr].get_value()).reshape(shape)
                         for name, shape, (layer, attr), var in _variables(model, spec) if isinstance(var, nnx.Param)}


def without_dropout(model: TwinNet):
    """nnx.Dropout with rate 0 returns its input in training mode too; the rate is part of the model's graph, so
    the compiled programs it changes are compiled again, not reused."""
    return attributes_set([m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Dropout)], "rate", 0.0)


def layer_summary(model: TwinNet, spec: Spec) -> list[tuple[str, tuple, int]]:
    """(name, output shape, parameters) measured on the built model; parameters count BatchNorm's moving
    statistics too, as Keras's count_params() does (not Dropout's rng state)."""
    shapes = {}  # filled while tracing: shapes are known without compiling or running anything
    nnx.eval_shape(lambda m: m(jnp.zeros((1, *spec.input_shape), jnp.float32), shapes=shapes), model)
    rows = []
    for info in spec.info:
        layer = getattr(model, info.name, None)
        weights = [] if layer is None else jax.tree.leaves(nnx.state(layer, nnx.Any(nnx.Param, nnx.BatchStat)))
        rows.append((info.name, shapes[info.name], sum(int(np.prod(v.shape)) for v in weights)))
    return rows


# -- Adam -----------------------------------------------------------------------------------------
class _KerasAdamState(NamedTuple):
    count: jax.Array  # steps taken, on the device
    mu: optax.Updates
    nu: optax.Updates


def keras_adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = KERAS_ADAM_EPSILON):
    """Keras 3's Adam as an optax transformation, in Keras's order of operations and in float32:

        m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2);  alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)
        w -= (m * alpha) / (sqrt(v) + eps)

    optax.adam adds eps to sqrt(v_hat) after bias correction instead, so no eps makes the two agree.
    """
    f32 = jnp.float32

    def init(params):
        return _KerasAdamState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params),
                               jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        count = state.count + 1
        t = count.astype(f32)
        mu = jax.tree.map(lambda m, g: m + (g - m) * f32(1 - b1), state.mu, grads)
        nu = jax.tree.map(lambda v, g: v + (jnp.square(g) - v) * f32(1 - b2), state.nu, grads)
        alpha = f32(learning_rate) * jnp.sqrt(f32(1) - jnp.power(f32(b2), t)) / (f32(1) - jnp.power(f32(b1), t))
        updates = jax.tree.map(lambda m, v: -(m * alpha) / (jnp.sqrt(v) + f32(eps)), mu, nu)
        return updates, _KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def make_optimizer(lr: float, adam: str = "keras", eps: float = KERAS_ADAM_EPSILON) -> optax.GradientTransformation:
    """'keras': Keras's Adam formula (the fair protocol); 'native': optax.adam's defaults."""
    if adam == "keras":
        return keras_adam(lr, eps=eps)
    if adam == "native":
        return optax.adam(lr)
    raise ValueError(f"unknown adam {adam!r}; use keras or native")


# -- training ---------------------------------------------------------------------------------------
@nnx.jit
def _idiomatic_step(model, optimizer, x, y):
    """The Flax tutorial's train step: nnx.value_and_grad on the module, Optimizer.update in place."""
    loss, grads = nnx.value_and_grad(_loss)(model, x, y)
    optimizer.update(model, grads)
    return loss


def pure_batch_step(graphdef, tx):
    """One step on (parameters, Adam state, the rest) and a batch, as a pure function. The rest is every
    other variable (BatchNorm's moving statistics, the dropout stream's counter): the step returns it as the
    forward pass left it."""

    def step(params, opt_state, rest, xb, yb):
        def loss_of(p):
            # copy: Variables made at this trace level, or BatchNorm and Dropout may not update theirs
            model = nnx.merge(graphdef, p, rest, copy=True)
            return _loss(model, xb, yb), nnx.split(model, nnx.Param, ...)[2]

        (loss, rest), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, rest, loss

    return step


def _pure_step(graphdef, tx):
    """pure_batch_step on the rows ``idx`` of the training set held on the device."""
    batch_step = pure_batch_step(graphdef, tx)

    def step(params, opt_state, rest, x, y, idx):
        return batch_step(params, opt_state, rest, x[idx], y[idx])

    return step


def _tuned_step(graphdef, tx):
    """The pure step jitted, its input buffers donated to its output."""
    return jax.jit(_pure_step(graphdef, tx), donate_argnums=(0, 1, 2))


@functools.lru_cache(maxsize=64)
def _tuned_programs(graphdef, lr: float, adam: str, eps: float) -> tuple:
    """(step, epoch) of a network and an optimizer: every trainer of them shares these jitted functions, so a
    second trainer of the same network compiles nothing (a GraphDef is equal for every build of a spec)."""
    tx = make_optimizer(lr, adam, eps)
    return _tuned_step(graphdef, tx), _tuned_epoch(graphdef, tx)


def _tuned_epoch(graphdef, tx):
    """An epoch's full batches in one jitted lax.scan over the (steps, batch) index array: one dispatch per
    epoch. scripts/jax_scan_vs_step.py: 3.8x faster than a dispatch per step on an H200, 10.5x slower on
    XLA's CPU backend."""
    step = _pure_step(graphdef, tx)

    def epoch(params, opt_state, rest, x, y, batches):
        def body(carry, idx):
            *carry, loss = step(*carry, x, y, idx)
            return tuple(carry), loss

        return jax.lax.scan(body, (params, opt_state, rest), batches)

    return jax.jit(epoch, donate_argnums=(0, 1, 2))


class Trainer(BaseTrainer):
    """Batches are index lists so every twin sees the same ones.

    variant 'idiomatic': the Flax MNIST tutorial's loop: nnx.Optimizer and an nnx.jit step fed NumPy batches.
    variant 'tuned': a pure jax.jit step on the parameter pytree with donated buffers and the training data
    resident on the device; the other variables (moving statistics, dropout stream) go through the step too.
    On a GPU an epoch's full batches run in one lax.scan; on the CPU one dispatch per step, whichever was
    faster there (``epoch_scan`` overrides the choice).
    The model's variables are brought up to date after step() and after an epoch.
    """

    predict_logits = staticmethod(predict)

    def __init__(self, model, spec, config: TrainerConfig, metrics=(), epoch_scan=None):
        super().__init__(model, spec, config, metrics)
        self.device = _device(resolve_device(config.device))
        self.tx = make_optimizer(config.lr, config.adam, config.eps)
        self.key = jax.random.key(self.seed)  # the notebook protocol's own shuffle
        self._epoch = None
        if self.variant == "idiomatic":
            self.optimizer = nnx.Optimizer(model, self.tx, wrt=nnx.Param)
        else:
            model.use_tuned_plan()  # for the step's graph only: a forward pass alone is faster with max_pool
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)
            model.use_tuned_plan(False)
            # Committed to the device, as the step's outputs are: an uncommitted input (a fresh model's
            # weights, Adam's zero step count) made the second call compile the step again, which for the
            # scan lands inside the first timed steady-state epoch.
            self.params, self.opt_state, self.rest = jax.device_put((params, self.tx.init(params), rest),
                                                                    self.device)
            self._step, epoch = _tuned_programs(graphdef, config.lr, config.adam, config.eps)
            if epoch_scan is None:
                epoch_scan = self.device.platform == "gpu"
            if epoch_scan:
                self._epoch = epoch
        self.x = self.y = None

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x_np, self.y_np = np.asarray(x, np.float32), np.asarray(y, np.int32)
        if self.variant == "tuned":  # idiomatic code feeds NumPy batches to the jitted step
            self.x, self.y = jax.device_put(self.x_np, self.device), jax.device_put(self.y_np, self.device)

    def _train_step(self, idx):
        if self.variant == "idiomatic":
            return _idiomatic_step(self.model, self.optimizer, self.x_np[idx], self.y_np[idx])
        self.params, self.opt_state, self.rest, loss = self._step(self.params, self.opt_state, self.rest,
                                                                  self.x, self.y, np.asarray(idx, np.int32))
        return loss

    def _write_back(self) -> None:
        if self.variant == "tuned":  # the model held the buffers the last step donated
            nnx.update(self.model, self.params, self.rest)

    def step(self, idx):
        """One training step on the rows ``idx``; returns the loss (a device scalar, not yet waited for)."""
        loss = self._train_step(idx)
        self._write_back()
        return loss

    def train_epoch(self, order, batch_size, on_step=None, validation=None) -> float:
        """One epoch over ``order`` (None: jax.random's own shuffle). The model is stale until it ends."""
        if order is None:
            self.key, key = jax.random.split(self.key)
            order = np.asarray(jax.random.permutation(key, len(self.x_np)))
        losses, scanned = [], 0
        if self._epoch is not None and len(order) >= batch_size:  # full batches in one scan, the rest a step
            scanned = len(order) // batch_size
            batches = np.asarray(order[:scanned * batch_size], np.int32).reshape(scanned, batch_size)
            (self.params, self.opt_state, self.rest), step_losses = self._epoch(
                self.params, self.opt_state, self.rest, self.x, self.y, batches)
            losses.append(step_losses)
            if on_step is not None:
                on_step(scanned)
        for steps, start in enumerate(range(scanned * batch_size, len(order), batch_size), scanned + 1):
            losses.append(self._train_step(order[start:start + batch_size]))  # dispatched, not waited for
            if on_step is not None:
                on_step(steps)
        self._write_back()
        return float(np.mean(np.concatenate([np.ravel(v) for v in jax.device_get(losses)])))

    def sync(self) -> None:
        jax.block_until_ready(self.params if self.variant == "tuned" else nnx.state(self.model))


make_trainer = Trainer.from_options


def make_predictor(model, variant: str = "idiomatic"):
    """x (N, H, W, C) -> logits. idiomatic: an nnx.jit forward; tuned: jax.jit on the split state, with
    the weights the model has now resident on its device (no graph traversal per call). Both use the spec's
    plan: the tuned plan's tiled max-pool pays off in the backward pass only (a forward pass alone is
    slower with it)."""
    TrainerConfig(variant=variant)  # an unknown variant is refused, never run as another
    if variant == "idiomatic":
        return lambda x: np.asarray(_forward(model, jnp.asarray(x)))
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    return lambda x: np.asarray(forward(state, x))


def isa() -> str:
    """The instruction set XLA's CPU code is generated for: the CPU's, capped by --xla_cpu_max_isa."""
    caps = re.findall(r"--xla_cpu_max_isa=(\S+)", os.environ.get("XLA_FLAGS", ""))
    return machine.capped_isa(caps[-1] if caps else None)  # the last given (isa_cap_environment leaves one)


def environment() -> dict:
    return {
        "framework": "jax", "version": version(), "isa": isa(),
        **configure(), "threads_set_by": _THREADS["how"],
        "xla_flags": os.environ.get("XLA_FLAGS", "unset"),
        "gpu_preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        "devices": [str(d) for d in jax.devices()],
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        "python": platform.python_version(),
    }


# -- files: Flax's msgpack serialisation of the canonical weights, one dict per layer ---------------
def load_file(path, spec: Spec):
    """Weights saved by save_file (flax.serialization msgpack) -> (TwinNet with them, spec)."""
    from flax import serialization

    try:
        with open(path, "rb") as f:
            state = serialization.msgpack_restore(f.read())
    except (ValueError, OSError) as exc:  # msgpack's errors for truncated or foreign bytes are ValueErrors
        raise ValueError(f"not Flax parameters saved as msgpack ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise ValueError(f"holds a {type(state).__name__}, not a dict of layers")
    flat = {f"{layer}/{key}": value for layer, keys in state.items() if isinstance(keys, dict)
            for key, value in keys.items()}
    try:
        check_layout(spec, flat)
    except ValueError as exc:
        raise ValueError(f"does not match the spec: {exc}; pass the right --spec") from None
    model = build(spec)
    set_weights(model, spec, flat)
    return model, spec


def save_file(model, spec: Spec, path) -> None:
    from flax import serialization

    weights = get_weights(model, spec)  # canonical names and shapes, moving statistics included
    tree = {info.name: {key: weights[f"{info.name}/{key}"] for key in info.weight_shapes} for info in spec.param_layers}
    with open(path, "wb") as f:
        f.write(serialization.msgpack_serialize(tree))


def _init_name(init) -> str:
    """Flax initialisers are closures: variance_scaling's settings are its free variables."""
    free = inspect.getclosurevars(init).nonlocals
    if {"scale", "mode", "distribution"} <= set(free):
        known = {(1.0, "fan_in", "truncated_normal"): "lecun_normal", (2.0, "fan_in", "truncated_normal"): "he_normal",
                 (1.0, "fan_avg", "uniform"): "glorot_uniform"}
        key = (free["scale"], free["mode"], free["distribution"])
        return f"{known.get(key, 'variance_scaling')} ({free['scale']:g}, {free['mode']}, {free['distribution']})"
    return getattr(init, "__name__", repr(init))


def audit_defaults() -> dict:
    """{`twincnn audit` row key: this framework's default, as text} (backends/defaults.py ROWS)."""

    conv = inspect.signature(nnx.Conv.__init__).parameters
    adam = inspect.signature(optax.adam).parameters
    pool = inspect.signature(nnx.max_pool).parameters
    pool_doc = nnx.max_pool.__doc__ or ""
    threads = configure()
    flags = os.environ.get("XLA_FLAGS", "unset")
    precision = jax.config.jax_default_matmul_precision
    return {
        "conv_init": _init_name(conv["kernel_init"].default),
        "dense_init": _init_name(signature_default(nnx.Linear.__init__, "kernel_init")),
        "bias_init": _init_name(conv["bias_init"].default),
        "adam_eps": f"{adam['eps'].default:g}",
        "adam_betas": f"{adam['b1'].default:g}, {adam['b2'].default:g}",
        "adam_formula": (f"w -= lr · m̂/(√(v̂ + ε_root) + ε), ε_root={adam['eps_root'].default:g}"
                         if "eps_root" in adam else "w -= lr · m̂/(√v̂ + ε)"),
        "shuffle": "none built in: the loop permutes (jax.random.permutation)",
        "partial_batch": "the loop decides (kept here: a second compiled shape)",
        "intra": f"{threads['intra_op_threads']} ({environment()['threads_set_by']})",
        "inter": "no setting (one XLA program at a time per device)",
        "tf32": f"jax_default_matmul_precision={precision!r}" + (" (GPU: TF32 allowed)" if precision is None else ""),
        "determinism": ("XLA on CPU: deterministic; GPU: xla_gpu_deterministic_ops "
                        + ("on" if "xla_gpu_deterministic_ops=true" in flags else "off")),
        "fit_epoch": "nothing: the user's loop does only what it says",
        "graph": "eager until jit (jax.jit / nnx.jit); the Flax tutorial jits the train step",
        "layout": "NHWC, HWIO kernels; reshape flattens in (H, W, C) order",
        "precision": str(jax.numpy.zeros(()).dtype) + (" (jax_enable_x64 off)" if not jax.config.jax_enable_x64 else ""),
        "loss": "per example (optax); the loop takes .mean()",
        "onednn": f"XLA_FLAGS={flags}",
        "conv_padding": f"nnx.Conv(padding={conv['padding'].default!r})",
        "pool_strides": (f"max_pool(strides={pool['strides'].default}) = "
                         + ("1 (overlapping windows)" if "(1, ..., 1)" in pool_doc else "see max_pool's docstring")),
        **_jax_layer_defaults(jax, nnx),
    }


def _jax_layer_defaults(jax, nnx) -> dict:
    """The layer defaults behind the zoo's layers, read from Flax and jax.nn: signatures, one BatchNorm step."""
    bn = nnx.BatchNorm(1, momentum=0.0, rngs=nnx.Rngs(0))  # momentum 0: the moving variance becomes the batch's
    bn(jax.numpy.array([[0.0], [2.0]]), use_running_average=False)
    depthwise = nnx.Conv(3, 6, (3, 3), feature_group_count=3, rngs=nnx.Rngs(0))
    pads = jax.lax.padtype_to_pads((5, 5), (2, 2), (2, 2), "SAME")  # 5 -> 3 windows of 2: one padded pixel
    include_pad = signature_default(nnx.avg_pool, "count_include_pad")
    return {
        "bn_momentum": (f"nnx.BatchNorm(momentum={signature_default(nnx.BatchNorm.__init__, 'momentum'):g}): "
                        f"moving = m·moving + (1-m)·batch"),
        "bn_epsilon": f"nnx.BatchNorm(epsilon={signature_default(nnx.BatchNorm.__init__, 'epsilon'):g})",
        "bn_variance": (f"biased: the moving variance after one batch [0, 2] is {float(bn.var[...][0]):g}; "
                        f"use_fast_variance={signature_default(nnx.BatchNorm.__init__, 'use_fast_variance')} (E[x²] - E[x]²)"),
        "avgpool_same": (f"avg_pool(count_include_pad={include_pad}): "
                         + ("the whole window" if include_pad else "the real cells")),
        "same_side": (f"padding='SAME' (lax): 5 -> 3 windows of 2 pad {tuple(pads[0])}: the odd pixel "
                      + ("after (bottom/right)" if pads[0][1] > pads[0][0] else "before (top/left)")),
        "gelu": f"jax.nn.gelu(approximate={signature_default(jax.nn.gelu, 'approximate')})",
        "leaky_slope": f"jax.nn.leaky_relu(negative_slope={signature_default(jax.nn.leaky_relu, 'negative_slope'):g})",
        "ln_epsilon": f"nnx.LayerNorm(epsilon={signature_default(nnx.LayerNorm.__init__, 'epsilon'):g})",
        "depthwise_layout": (f"nnx.Conv(feature_group_count=in) kernel {tuple(depthwise.kernel.shape)} "
                             f"= (kh, kw, 1, in·multiplier)"),
    }
