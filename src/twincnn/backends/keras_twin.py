"""What the Keras twins share, whatever backend Keras runs on: the model built from the spec (Keras's layout and
names are the canonical ones), weights in and out, inference, `.keras` files, Keras's defaults, and the trainer's
idiomatic side (compile() and fit()). Each backend's module (tensorflow.py, keras_jax.py, keras_torch.py) starts
Keras on its backend (keras_start.start) before importing this, and holds only what differs: gradients, the tuned
step, devices, threads."""

from __future__ import annotations

import functools
import inspect
import zipfile

import numpy as np
import keras

from ..errors import UserError
from ..spec import INPUT, MERGES, WINDOWED, Spec, canonical, real_cells, same_padding
from ..weights import check_layout
from .base import BaseTrainer, attributes_set
from .defaults import signature_default
from .interface import KERAS_ADAM_EPSILON, TrainerConfig


@keras.saving.register_keras_serializable(package="twincnn")
class GELU(keras.layers.Layer):
    """GELU with its approximation named, used as a layer's activation: keras.activations.gelu defaults to
    the exact form, keras.ops.gelu to the tanh one, and a saved activation function keeps only its name."""

    def __init__(self, approximate: bool, **kwargs):
        super().__init__(**kwargs)
        self.approximate = bool(approximate)

    def call(self, x):
        return keras.activations.gelu(x, approximate=self.approximate)

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


def _keras_activation(cfg):
    """The spec's activation with every setting explicit; layers for those with settings, so they save."""
    name = cfg.get("activation")
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=cfg["negative_slope"])
    if name == "elu":
        return keras.layers.ELU(alpha=1.0)
    if name in ("gelu", "gelu_tanh"):
        return GELU(approximate=name == "gelu_tanh")
    return name  # None, relu, relu6, sigmoid, tanh, silu: functions without settings


@keras.saving.register_keras_serializable(package="twincnn")
class ConstantPadding2D(keras.layers.Layer):
    """Padding with a constant: -inf before a max-pool with explicit padding, so padded cells never win."""

    def __init__(self, padding, value: float, **kwargs):
        super().__init__(**kwargs)
        self.padding, self.value = tuple(tuple(p) for p in padding), float(value)

    def call(self, x):
        return keras.ops.pad(x, ((0, 0), *self.padding, (0, 0)), constant_values=self.value)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@keras.saving.register_keras_serializable(package="twincnn")
class PaddedAveragePooling2D(keras.layers.Layer):
    """An average pool whose explicit padding never counts: each window's sum over the zero-padded input,
    divided by its real cells (Keras's own layer says only 'valid' and 'same')."""

    def __init__(self, padding, pool_size, strides, cells, **kwargs):
        super().__init__(**kwargs)
        self.padding, self.pool_size, self.strides = (tuple(tuple(p) for p in padding), tuple(pool_size),
                                                      tuple(strides))
        self.cells = tuple(tuple(c) for c in cells)  # (rows, cols): the real cells per window along each axis
        self._divisor = np.outer(*self.cells).astype(np.float32)[None, :, :, None] / np.prod(self.pool_size)

    def call(self, x):
        padded = keras.ops.pad(x, ((0, 0), *self.padding, (0, 0)))
        return keras.ops.average_pool(padded, self.pool_size, self.strides, "valid") / keras.ops.convert_to_tensor(
            self._divisor, "float32")

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "pool_size": self.pool_size,
                "strides": self.strides, "cells": self.cells}


def _keras_padding(info):
    """Keras's own 'valid'/'same' where it computes the spec's padding; None where it needs explicit padding (also
    an average pool's 'same' on a backend whose own 'same' average pool differs from Keras's meaning)."""
    mode = info.config["padding"]
    if mode not in ("valid", "same"):
        window = info.config.get("kernel_size", info.config.get("pool_size"))
        dilation = info.config.get("dilation_rate", (1, 1))
        same = tuple(same_padding(size, (k - 1) * d + 1, stride) for size, k, d, stride in
                     zip(info.input_shape[:2], window, dilation, info.config["strides"]))
        mode = "same" if info.padding == same else None
    if mode == "same" and info.type == "avgpool2d" and not own_same_average_pool_is_kerass():
        return None
    return mode


@functools.cache
def own_same_average_pool_is_kerass() -> bool:
    """Whether AveragePooling2D(padding='same') computes here what it means in Keras (the odd padded cell at the
    bottom/right, the real cells only counted): compared with the explicit padding twincnn writes otherwise, on a
    ramp where padding on the wrong side shows."""
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    own = keras.ops.convert_to_numpy(keras.layers.AveragePooling2D(3, 2, "same")(x))
    # 'same' pads 4 rows to 5 with one at the bottom (one column at the right): windows at rows 0-2 and 2-4,
    # holding 3 and 2 real rows
    explicit = PaddedAveragePooling2D(((0, 1), (0, 1)), (3, 3), (2, 2), ((3, 2), (3, 2)))(x)
    return bool(np.allclose(own, keras.ops.convert_to_numpy(explicit)))


def _keras_layers(info) -> list:
    """The Keras layers that compute one spec layer, in order (explicit padding: a padding layer first)."""
    padding = _keras_padding(info) if info.type in WINDOWED else None
    if info.type in WINDOWED and padding is None:
        if info.type == "avgpool2d":
            cfg = info.config
            return [PaddedAveragePooling2D(info.padding, cfg["pool_size"], cfg["strides"], real_cells(info),
                                           name=info.name)]
        pad = (ConstantPadding2D(info.padding, float("-inf"), name=f"{info.name}_pad") if info.type == "maxpool2d"
               else keras.layers.ZeroPadding2D(info.padding, data_format="channels_last", name=f"{info.name}_pad"))
        return [pad, _keras_layer(info, "valid")]
    return [_keras_layer(info, padding)]


def _keras_layer(info, padding=None):
    cfg, name, nhwc = info.config, info.name, "channels_last"
    if info.type == "conv2d":
        return keras.layers.Conv2D(cfg["filters"], cfg["kernel_size"], cfg["strides"], padding,
                                   data_format=nhwc, dilation_rate=cfg["dilation_rate"], groups=cfg["groups"],
                                   activation=_keras_activation(cfg), use_bias=cfg["use_bias"], name=name)
    if info.type == "depthwiseconv2d":
        return keras.layers.DepthwiseConv2D(cfg["kernel_size"], cfg["strides"], padding,
                                            depth_multiplier=cfg["depth_multiplier"], data_format=nhwc,
                                            dilation_rate=(1, 1), activation=_keras_activation(cfg),
                                            use_bias=cfg["use_bias"], name=name)
    if info.type == "maxpool2d":
        return keras.layers.MaxPooling2D(cfg["pool_size"], cfg["strides"], padding, data_format=nhwc, name=name)
    if info.type == "avgpool2d":  # Keras's 'same' average divides by the real cells only
        return keras.layers.AveragePooling2D(cfg["pool_size"], cfg["strides"], padding, data_format=nhwc,
                                             name=name)
    if info.type == "globalavgpool2d":
        return keras.layers.GlobalAveragePooling2D(data_format=nhwc, keepdims=False, name=name)
    if info.type == "flatten":
        return keras.layers.Flatten(data_format=nhwc, name=name)
    if info.type == "dense":
        return keras.layers.Dense(cfg["units"], activation=_keras_activation(cfg), use_bias=cfg["use_bias"],
                                  name=name)
    if info.type == "batchnorm":
        return keras.layers.BatchNormalization(axis=-1, momentum=cfg["momentum"], epsilon=cfg["epsilon"],
                                               center=True, scale=True, name=name)
    if info.type == "dropout":
        return keras.layers.Dropout(cfg["rate"], name=name)
    if info.type == "layernorm":
        return keras.layers.LayerNormalization(axis=-1, epsilon=cfg["epsilon"], center=True, scale=True,
                                               rms_scaling=False, name=name)
    if info.type == "activation":
        activation = _keras_activation(cfg)
        if isinstance(activation, str):
            return keras.layers.Activation(activation, name=name)
        activation.name = name  # a layer of its own already (LeakyReLU, ELU, GELU): named like the spec's
        return activation
    if info.type == "zeropad2d":
        return keras.layers.ZeroPadding2D(info.padding, data_format=nhwc, name=name)
    if info.type == "add":
        return keras.layers.Add(name=name)
    if info.type == "concatenate":
        return keras.layers.Concatenate(axis=-1, name=name)
    raise ValueError(f"{name}: the Keras twin has no layer type {info.type!r}")


# The attribute that keeps the spec's output head on a twin, which computes the logits: the reader reads it (check
# reads twins built from files); save_file writes the head from the spec.
OUTPUT_HEAD = "twincnn_output"


def build(spec: Spec, seed: int | None = None, device: str = "cpu") -> keras.Model:
    """The twin with Keras's own initialisers (seeded); set_weights() for shared ones. A Sequential model
    where each layer reads the one before it (what `port` reads back), a functional one for a graph. Its
    output is the logits, whatever the spec's head (kept as OUTPUT_HEAD). ``device``: 'cpu' or 'cuda', checked
    by the backend's resolve_device first."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    with keras.device(keras_device(device)):
        if spec.is_sequential and all(info.type not in WINDOWED or _keras_padding(info) for info in spec.info):
            layers = [layer for info in spec.info for layer in _keras_layers(info)]
            model = keras.Sequential([keras.Input(shape=spec.input_shape), *layers], name="twincnn")
        else:
            outputs = {INPUT: keras.Input(shape=spec.input_shape)}
            for info in spec.info:
                inputs = [outputs[name] for name in info.inputs]
                x = inputs if info.type in MERGES else inputs[0]
                for layer in _keras_layers(info):
                    x = layer(x)
                outputs[info.name] = x
            model = keras.Model(outputs[INPUT], outputs[spec.info[-1].name], name="twincnn")
    setattr(model, OUTPUT_HEAD, spec.output)
    return model


def keras_device(device: str) -> str:
    """Keras's name for twincnn's device ('cpu' or 'cuda'), which keras.device() takes on every backend."""
    return "gpu" if device == "cuda" else "cpu"  # no index: on PyTorch "cpu:0" copies each new variable, losing its kind


def _variables(model: keras.Model, spec: Spec, trainable_only: bool = False):
    """(canonical name, variable) in spec order; Keras's layout and names (kernel, gamma, moving_mean ...)
    are the canonical ones. ``model`` is a twin or a user's model as read (tensorflow_read.ReadNet):
    get_layer(name) holds a spec layer's variables in both."""
    names = spec.trainable_weight_shapes() if trainable_only else spec.weight_shapes()
    for name in names:
        layer, key = name.split("/")
        yield name, getattr(model.get_layer(layer), key)


def get_weights(model: keras.Model, spec: Spec) -> dict[str, np.ndarray]:
    return {name: np.array(var.numpy()) for name, var in _variables(model, spec)}


def set_weights(model: keras.Model, spec: Spec, weights: dict) -> None:
    check_layout(spec, weights)
    for name, var in _variables(model, spec):
        var.assign(np.asarray(weights[name], np.float32))


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    out = [keras.ops.convert_to_numpy(model(x[start:start + batch_size], training=False))
           for start in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def training_variables(model, spec: Spec) -> tuple[list[str], list, list]:
    """(the trainable weights' canonical names, their variables, the other variables a training pass moves: the
    moving statistics), in spec order; for a twin or a user's model as read."""
    names, trainable = zip(*_variables(model, spec, trainable_only=True))
    moving = [var for name, var in _variables(model, spec) if name not in names]
    return list(names), list(trainable), moving


def dropout_layers(model) -> list:
    """Every keras.layers.Dropout in ``model``, nested models' included."""
    found = []
    for layer in getattr(model, "layers", ()):
        found += [layer] if isinstance(layer, keras.layers.Dropout) else dropout_layers(layer)
    return found


def without_dropout(model: keras.Model):
    """Keras's Dropout with rate 0 returns its input in training mode too. ``model`` a twin, or a user's model as
    read (tensorflow_read.ReadNet, whose layers are the user model's)."""
    return attributes_set(dropout_layers(model), "rate", 0.0)


def layer_summary(model: keras.Model, spec: Spec) -> list[tuple[str, tuple, int]]:
    return [(info.name, tuple(model.get_layer(info.name).output.shape[1:]),
             int(model.get_layer(info.name).count_params())) for info in spec.info]


def make_optimizer(model, lr: float, adam: str = "keras", eps: float = KERAS_ADAM_EPSILON):
    """Keras's Adam: 'keras' and 'native' are the same update here (epsilon 1e-7 unless ``eps`` says)."""
    if adam not in ("keras", "native"):
        raise ValueError(f"unknown adam {adam!r}; use keras or native")
    return keras.optimizers.Adam(learning_rate=lr, epsilon=eps)


class _EpochHooks(keras.callbacks.Callback):
    """fit()'s callbacks -> the scheduler's hooks: wait before each epoch, count steps, stop the clock. Keras hands
    a callback its logs as Python numbers, so each step has run when on_train_batch_end is called."""

    def __init__(self, hooks):
        super().__init__()
        self.hooks = hooks

    def on_epoch_begin(self, epoch, logs=None):
        self.hooks.epoch_start(epoch + 1)

    def on_train_batch_end(self, batch, logs=None):
        self.hooks.step(batch + 1)

    def on_epoch_end(self, epoch, logs=None):  # after fit's validation pass, which the notebook timed
        self.hooks.epoch_end(epoch + 1, float(logs["loss"]))


class _StepCallback(keras.callbacks.Callback):
    def __init__(self, on_step):
        super().__init__()
        self.on_step = on_step

    def on_train_batch_end(self, batch, logs=None):
        self.on_step(batch + 1)


class KerasTrainer(BaseTrainer):
    """idiomatic: compile() with the backend's default jit_compile, then fit() (train_on_batch() for one step), as
    Keras users write it; tuned: the backend's own step on data it holds, which a backend's Trainer writes as
    hold_data(), tuned_step(idx) and sync(). Both use Keras's Adam."""

    predict_logits = staticmethod(predict)
    resolve_device = None  # the backend's resolve_device(device): checks that the device exists

    def __init__(self, model, spec, config: TrainerConfig, metrics=()):
        super().__init__(model, spec, config, metrics)
        type(self).resolve_device(config.device)
        self.device = keras_device(config.device)
        self.optimizer = make_optimizer(model, config.lr, config.adam, config.eps)
        model.compile(optimizer=self.optimizer, loss=LOSS, metrics=list(self.metrics))

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x_np, self.y_np = np.asarray(x, np.float32), np.asarray(y, np.int64)
        if self.variant == "tuned":  # idiomatic code feeds NumPy to fit()/train_on_batch()
            with keras.device(self.device):
                self.hold_data()

    def hold_data(self) -> None:
        raise NotImplementedError

    def tuned_step(self, idx):
        raise NotImplementedError

    def step(self, idx):
        """One training step on the rows ``idx``; returns the loss."""
        if self.variant == "idiomatic":  # what a Keras user writes for a custom loop
            return self.model.train_on_batch(self.x_np[idx], self.y_np[idx])
        return self.tuned_step(idx)

    def train_epoch(self, order, batch_size, on_step=None, validation=None) -> float:
        """One epoch over ``order`` (None: Keras's own shuffle, as fit(shuffle=True) does)."""
        if self.variant == "tuned" and validation is None:
            if order is None:
                order = np.random.default_rng(self.seed).permutation(len(self.x_np))
                self.seed += 1
            losses = []
            with keras.device(self.device):
                for start in range(0, len(order), batch_size):
                    # kept as tensors: reading each loss would wait for every step
                    losses.append(self.step(order[start:start + batch_size]))
                    if on_step is not None:
                        on_step(len(losses))
                return float(keras.ops.mean(keras.ops.stack(losses)))
        x, y = (self.x_np, self.y_np) if order is None else (self.x_np[order], self.y_np[order])
        history = self.model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=order is None, verbose=0,
                                 validation_data=validation,
                                 callbacks=[_StepCallback(on_step)] if on_step else [])
        return float(history.history["loss"][-1])

    def run(self, epochs, batch_size, order_for_epoch, hooks, validation=None) -> None:
        """All epochs. idiomatic: one fit() call, as Keras users write it, over the shared orders where there are
        some; tuned: the backend's step in the shared loop."""
        if self.variant == "tuned" and validation is None:
            with keras.device(self.device):
                return super().run(epochs, batch_size, order_for_epoch, hooks)
        orders = [order_for_epoch(epoch) for epoch in range(1, epochs + 1)]
        if orders[0] is None:  # Keras shuffles, as fit(shuffle=True) does
            keras.utils.set_random_seed(self.seed)
            self.model.fit(self.x_np, self.y_np, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
                           validation_data=validation, callbacks=[_EpochHooks(hooks)])
            return
        # steps_per_epoch keeps one iterator across epochs, so epoch e gets the e-th shared order
        self.model.fit(self.batches(orders, batch_size), epochs=epochs, steps_per_epoch=-(-len(self.x_np) // batch_size),
                       shuffle=False, verbose=0, validation_data=validation, callbacks=[_EpochHooks(hooks)])

    def batches(self, orders: list, batch_size: int):
        """The shared orders' batches, epoch after epoch, as fit() takes them on this backend: a generator."""
        for order in orders:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                yield self.x_np[idx], self.y_np[idx]

    def sync(self) -> None:
        pass  # idiomatic: Keras returns after each step has run; a tuned Trainer waits for its queued steps


def make_predictor(model, variant: str = "idiomatic"):
    """x (N, H, W, C) -> logits with model.predict() (idiomatic); the backend's module has the tuned one."""
    TrainerConfig(variant=variant)  # an unknown variant is refused, never run as another
    return lambda x: model.predict(x, batch_size=len(x), verbose=0)


# -- files: a saved Keras model <-> spec + canonical weights ------------------------------------
# What keras.saving.load_model raises for a file that is not a model it can load (Keras 3.15):
# not a zip / empty / truncated .keras -> ValueError; a zip without config.json -> KeyError; a bad
# config.json -> JSONDecodeError (a ValueError); a layer class it does not know -> TypeError;
# a damaged .h5 -> OSError. Only the load_model call is guarded, so bugs in twincnn keep their traceback.
NOT_A_MODEL = (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile)


def load_file(path, spec: Spec | None):
    """A saved .keras/.h5 model -> (model rebuilt by twincnn with its weights, spec); ValueError for bad input."""
    try:
        saved = keras.saving.load_model(path, compile=False)
    except NOT_A_MODEL as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"not a Keras model file Keras can load ({type(exc).__name__}: {first})") from None
    from .tensorflow_read import read_model

    try:
        read = read_model(saved)
    except UserError as exc:  # what a spec cannot express is bad input here
        raise ValueError(str(exc)) from None
    derived = read.spec  # canonical
    if spec is not None and canonical(spec) != derived:
        raise ValueError(f"the model's layers ({derived.describe()}) do not match --spec ({spec.describe()})")
    model = build(derived)
    set_weights(model, derived, read.get_weights())
    return model, derived


def save_file(model, spec: Spec, path) -> None:
    """The twin as a Keras file; with an output head, a model that ends in it (an Activation layer named after
    it, on the logits), as a user's own classifier does."""
    if spec.output != "logits":
        head = keras.layers.Activation(spec.output, name=spec.output)
        model = keras.Model(model.inputs[0], head(model.outputs[0]), name=model.name)
    model.save(str(path))



def audit_defaults() -> dict:
    """{`twincnn audit` row key: Keras's default, as text}, whatever its backend (backends/defaults.py ROWS); each
    backend's module adds its own rows (threads, graph compilation, device precision)."""
    conv, dense = keras.layers.Conv2D(1, 1), keras.layers.Dense(1)
    adam = keras.optimizers.Adam()
    fit = inspect.signature(keras.Model.fit).parameters
    loss = keras.losses.SparseCategoricalCrossentropy()
    return {
        "conv_init": type(conv.kernel_initializer).__name__,
        "dense_init": type(dense.kernel_initializer).__name__,
        "bias_init": type(conv.bias_initializer).__name__,
        "adam_eps": f"{adam.epsilon:g}",
        "adam_betas": f"{adam.beta_1:g}, {adam.beta_2:g}",
        "adam_formula": f"w -= lr·√(1-β2ᵗ)/(1-β1ᵗ) · m/(√v + ε) ({type(adam).__module__}.{type(adam).__name__})",
        "shuffle": f"fit(shuffle={fit['shuffle'].default})",
        "partial_batch": "kept (fit)",
        "fit_epoch": (f"validation pass if validation_data is given; progress bar verbose={fit['verbose'].default!r};"
                      f" compile() metrics computed every step"),
        "layout": f"{keras.config.image_data_format()} (NHWC), Flatten in (H, W, C) order",
        "precision": keras.config.floatx(),
        "conv_padding": f"Conv2D(padding={signature_default(keras.layers.Conv2D, 'padding')!r})",
        "pool_strides": (f"MaxPooling2D(strides={signature_default(keras.layers.MaxPooling2D, 'strides')})"
                         " = pool_size"),
        "loss": f"reduction={loss.reduction!r}",
        **_keras_layer_defaults(),
    }


def environment_on(native, name: str) -> dict:
    """What results.json records of a Keras twin on another framework's engine: that framework's record (``native``:
    its twin's module), with Keras's version, backend and compilation default."""
    return {**native.environment(), "framework": name, "version": f"keras {keras.__version__} on {native.version()}",
            "keras": keras.__version__, "keras_backend": keras.backend.backend(), "jit_compile": jit_compile_default()}


def audit_defaults_on(native, graph: str) -> dict:
    """A Keras twin's `twincnn audit` column on another framework's engine: Keras's defaults, and that framework's
    where Keras leaves a setting to it (threads, precision on GPUs); ``graph``: how its fit() runs a step."""
    return {**native.audit_defaults(), **audit_defaults(), "graph": f"{graph}; {jit_compile_default()}"}


def jit_compile_default() -> str:
    """What compile()'s jit_compile is by default, and what 'auto' becomes on this backend."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    default = signature_default(keras.Model.compile, "jit_compile")
    return f"jit_compile={default!r} (here {model.jit_compile})"


def _batch_variance(offset: float) -> float:
    """The variance BatchNormalization uses in training mode for the float32 batch [offset, offset + 2] (exactly 1):
    how this backend computes the moments shows at a large offset."""
    bn = keras.layers.BatchNormalization(momentum=0.0, epsilon=0.0, center=False, scale=False)
    out = keras.ops.convert_to_numpy(bn(np.array([[offset], [offset + 2.0]], np.float32), training=True))
    return float((2.0 / (out[1, 0] - out[0, 0])) ** 2)  # (x - mean) / sqrt(var): its spread gives var


@functools.cache
def one_pass_moments() -> bool:
    """Whether this backend's normalisations compute the variance as E[x²]-mean² (measured, not assumed): it loses
    float32 precision where |mean| is far above the spread, which check and the tests allow for."""
    return _batch_variance(1e4) != 1.0


def _keras_layer_defaults() -> dict:
    """The layer defaults behind the zoo's layers: signatures, and what one step of a layer does."""
    bn = keras.layers.BatchNormalization(momentum=0.0)  # momentum 0: the moving variance becomes the batch's
    bn(np.array([[0.0], [2.0]], np.float32), training=True)
    depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)
    depthwise.build((None, 5, 5, 3))
    return {
        "bn_momentum": (f"BatchNormalization(momentum={signature_default(keras.layers.BatchNormalization, 'momentum'):g}): "
                        f"moving = m·moving + (1-m)·batch"),
        "bn_epsilon": f"BatchNormalization(epsilon={signature_default(keras.layers.BatchNormalization, 'epsilon'):g})",
        "bn_variance": (f"biased: the moving variance after one batch [0, 2] is "
                        f"{float(bn.moving_variance.numpy()[0]):g}; the batch variance of [10000, 10002] in float32 "
                        f"{_batch_variance(1e4):g} (1 where it is computed as E[(x-mean)²], which E[x²]-mean² loses)"),
        "avgpool_same": ("AveragePooling2D(padding='same'): the real cells (padding not counted)"
                         if own_same_average_pool_is_kerass() else
                         "AveragePooling2D(padding='same') computes something else on this backend; the twin pads "
                         "explicitly (bottom/right) and divides by the real cells"),
        "same_side": "'same' in every layer with strides: the odd padded pixel at the bottom/right",
        "gelu": (f"keras.activations.gelu(approximate={signature_default(keras.activations.gelu, 'approximate')}), "
                 f"keras.ops.gelu(approximate={signature_default(keras.ops.gelu, 'approximate')})"),
        "leaky_slope": (f"LeakyReLU layer {signature_default(keras.layers.LeakyReLU, 'negative_slope'):g}, "
                        f"activations.leaky_relu {signature_default(keras.activations.leaky_relu, 'negative_slope'):g}"),
        "ln_epsilon": f"LayerNormalization(epsilon={signature_default(keras.layers.LayerNormalization, 'epsilon'):g})",
        "depthwise_layout": f"DepthwiseConv2D kernel {tuple(depthwise.kernel.shape)} = (kh, kw, in, multiplier)",
    }
