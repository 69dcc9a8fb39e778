"""Keras 3 (TensorFlow backend) twin: a Sequential model with layers named conv1.., fc1.."""

from __future__ import annotations

import os
import platform
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's start-up chatter out of reports
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402


def _import_quietly():
    """TF 2.21 logs oneDNN/CPU notices from C++ at import, past TF_CPP_MIN_LOG_LEVEL: fd 2 goes to a
    temporary file meanwhile. Dropped on success; on a failed import it is what says why, so it is shown."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        try:
            os.dup2(captured.fileno(), 2)
            import keras
            import tensorflow
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            captured.seek(0)
            text = captured.read().decode(errors="replace").strip()
            if text:
                print(f"TensorFlow/Keras wrote this while failing to import:\n{text}", file=sys.stderr)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return keras, tensorflow


keras, tf = _import_quietly()

from ..errors import UserError  # noqa: E402
from ..spec import Spec  # noqa: E402
from ..weights import check_layout  # noqa: E402
from .loop import run_epochs  # noqa: E402

NAME = "tensorflow"
NOTEBOOK_VALIDATION = True  # the notebook's fit() validated every epoch inside the timed call
if keras.backend.backend() != "tensorflow":
    raise ImportError(f"twincnn's Keras twin needs KERAS_BACKEND=tensorflow, not {keras.backend.backend()!r}")


def version() -> str:
    return f"tensorflow {tf.__version__}, keras {keras.__version__}"


def configure(threads: int | None = None) -> dict:
    """Set intra-op threads (inter-op 1); TF allows this only before its runtime starts."""
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # already initialised: the values below say what is in force
    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count()}


def resolve_device(device: str = "cpu") -> str:
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; use cpu or cuda")
    if device == "cuda" and not tf.config.list_physical_devices("GPU"):
        raise UserError("--device cuda: this TensorFlow sees no GPU (tensorflow-cpu?); use --device cpu "
                        "or --frameworks torch")
    if device == "cuda":  # float32 comparisons: no TF32 rounding
        tf.config.experimental.enable_tensor_float_32_execution(False)
    return "/GPU:0" if device == "cuda" else "/CPU:0"


def build(spec: Spec, seed: int | None = None, device: str = "cpu") -> keras.Model:
    """The twin with Keras's own initialisers (seeded); set_weights() for shared ones."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = []
    for info in spec.info:
        cfg = info.config
        if info.type == "conv2d":
            layers.append(keras.layers.Conv2D(cfg["filters"], cfg["kernel_size"], cfg["strides"], cfg["padding"],
                                              data_format="channels_last", activation=cfg["activation"],
                                              name=info.name))
        elif info.type == "maxpool2d":
            layers.append(keras.layers.MaxPooling2D(cfg["pool_size"], cfg["strides"], data_format="channels_last",
                                                    name=info.name))
        elif info.type == "flatten":
            layers.append(keras.layers.Flatten(data_format="channels_last", name=info.name))
        else:
            layers.append(keras.layers.Dense(cfg["units"], activation=cfg["activation"], name=info.name))
    with tf.device(resolve_device(device)):
        return keras.Sequential([keras.Input(shape=spec.input_shape), *layers], name="twincnn")


def _variables(model: keras.Model, spec: Spec):
    """(canonical name, variable) in spec order; Keras's layout is the canonical one."""
    for info in spec.param_layers:
        layer = model.get_layer(info.name)
        for key in info.weight_shapes:
            yield f"{info.name}/{key}", getattr(layer, key)


def get_weights(model: keras.Model, spec: Spec) -> dict[str, np.ndarray]:
    return {name: np.array(var.numpy()) for name, var in _variables(model, spec)}


def set_weights(model: keras.Model, spec: Spec, weights: dict) -> None:
    check_layout(spec, weights)
    for name, var in _variables(model, spec):
        var.assign(np.asarray(weights[name], np.float32))


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    out = [model(x[start:start + batch_size], training=False).numpy() for start in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def loss_and_grads(model: keras.Model, spec: Spec, x: np.ndarray, y: np.ndarray):
    """Mean sparse cross-entropy from logits on one batch and its canonical gradients."""
    names, variables = zip(*_variables(model, spec))
    with tf.GradientTape() as tape:
        loss = _LOSS(tf.constant(y), model(tf.constant(x, tf.float32), training=True))
    grads = tape.gradient(loss, list(variables))
    return float(loss), {name: np.array(g.numpy()) for name, g in zip(names, grads)}


def layer_summary(model: keras.Model, spec: Spec) -> list[tuple[str, tuple, int]]:
    return [(info.name, tuple(model.get_layer(info.name).output.shape[1:]),
             int(model.get_layer(info.name).count_params())) for info in spec.info]


def make_optimizer(model, lr: float, adam: str = "keras"):
    """Keras's Adam: 'keras' and 'native' are the same update here (epsilon 1e-7)."""
    if adam not in ("keras", "native"):
        raise ValueError(f"unknown adam {adam!r}; use keras or native")
    return keras.optimizers.Adam(learning_rate=lr)


class _EpochHooks(keras.callbacks.Callback):
    """fit()'s callbacks -> the scheduler's hooks: wait before each epoch, count steps, stop the clock."""

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


class Trainer:
    """variant 'idiomatic': Keras fit(); 'tuned': a tf.function train step on tensors held in memory."""

    def __init__(self, model, spec, lr=1e-3, adam="keras", variant="idiomatic", device="cpu", seed=0,
                 metrics=()):
        self.model, self.variant, self.seed = model, variant, seed
        self.device = resolve_device(device)
        self.optimizer = make_optimizer(model, lr, adam)
        model.compile(optimizer=self.optimizer, loss=_LOSS, metrics=list(metrics))
        self.x = self.y = None
        self._step = None

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x_np, self.y_np = np.asarray(x, np.float32), np.asarray(y, np.int64)
        if self.variant == "tuned":  # idiomatic code feeds NumPy to fit()/train_on_batch()
            with tf.device(self.device):
                self.x, self.y = tf.constant(self.x_np), tf.constant(self.y_np)
            self._step = self._make_step()

    def _make_step(self):
        model, optimizer, x, y = self.model, self.optimizer, self.x, self.y
        variables = model.trainable_variables

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def step(idx):
            xb, yb = tf.gather(x, idx), tf.gather(y, idx)
            with tf.GradientTape() as tape:
                loss = _LOSS(yb, model(xb, training=True))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        return step

    def step(self, idx):
        """One training step on the rows ``idx``; returns the loss."""
        if self.variant == "idiomatic":  # what a Keras user writes for a custom loop
            return self.model.train_on_batch(self.x_np[idx], self.y_np[idx])
        return self._step(tf.constant(idx, tf.int64))

    def train_epoch(self, order, batch_size, on_step=None, validation=None) -> float:
        """One epoch over ``order`` (None: Keras's own shuffle, as fit(shuffle=True) does)."""
        if self.variant == "tuned" and validation is None:
            if order is None:
                order = np.random.default_rng(self.seed).permutation(len(self.x_np))
                self.seed += 1
            total, steps = 0.0, 0
            with tf.device(self.device):
                for start in range(0, len(order), batch_size):
                    total += float(self.step(order[start:start + batch_size]))
                    steps += 1
                    if on_step is not None:
                        on_step(steps)
            return total / steps
        x, y = (self.x_np, self.y_np) if order is None else (self.x_np[order], self.y_np[order])
        history = self.model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=order is None, verbose=0,
                                 validation_data=validation,
                                 callbacks=[_StepCallback(on_step)] if on_step else [])
        return float(history.history["loss"][-1])

    def run(self, epochs, batch_size, order_for_epoch, hooks, validation=None) -> None:
        """All epochs. idiomatic: one fit() call, as Keras users write it (the fair protocol's batches
        come from a tf.data pipeline over the shared orders); tuned: the tf.function step in a loop."""
        if self.variant == "tuned" and validation is None:
            return run_epochs(self, epochs, batch_size, order_for_epoch, hooks)
        steps = -(-len(self.x_np) // batch_size)
        orders = [order_for_epoch(epoch) for epoch in range(1, epochs + 1)]
        if orders[0] is None:  # Keras shuffles, as fit(shuffle=True) does
            keras.utils.set_random_seed(self.seed)
            self.model.fit(self.x_np, self.y_np, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
                           validation_data=validation, callbacks=[_EpochHooks(hooks)])
            return
        x, y = tf.constant(self.x_np), tf.constant(self.y_np)
        batches = (tf.data.Dataset.from_tensor_slices(np.stack(orders))
                   .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
                   .map(lambda idx: (tf.gather(x, idx), tf.gather(y, idx)))
                   .prefetch(tf.data.AUTOTUNE))
        # steps_per_epoch keeps one iterator across epochs, so epoch e gets the e-th shared order.
        self.model.fit(batches, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
                       validation_data=validation,
                       callbacks=[_EpochHooks(hooks)])

    def sync(self) -> None:
        pass  # Keras returns after each step has run

    def predict(self, x: np.ndarray) -> np.ndarray:
        return predict(self.model, x)


def make_predictor(model, variant: str = "idiomatic"):
    """x (N, H, W, C) -> logits. idiomatic: model.predict(); tuned: a tf.function forward pass."""
    if variant == "idiomatic":
        return lambda x: model.predict(x, batch_size=len(x), verbose=0)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: forward(tf.constant(x)).numpy()


def make_trainer(model, spec, **kwargs) -> Trainer:
    return Trainer(model, spec, **kwargs)


def environment() -> dict:
    return {
        "framework": "tensorflow", "version": version(),
        **configure(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        "python": platform.python_version(),
    }


# -- files: a saved Keras model <-> spec + canonical weights ------------------------------------
SUPPORTED = "Conv2D, MaxPooling2D, Flatten, Dense (relu or linear activations)"


def _activation(layer, where):
    name = keras.activations.serialize(layer.activation)
    name = name if isinstance(name, str) else name.get("config", name.get("class_name"))
    if isinstance(name, dict):
        name = name.get("name")
    if name not in ("relu", "linear"):
        raise ValueError(f"{where}: activation {name!r} is not supported (relu or linear only)")
    return "relu" if name == "relu" else None


def spec_from_model(model) -> Spec:
    """Derive the spec of a Keras Sequential made of supported layers (ValueError names the layer)."""
    if not isinstance(model, keras.Sequential):
        raise ValueError(f"a {type(model).__name__} model; twincnn ports Sequential stacks of {SUPPORTED}")
    layers = []
    for layer in model.layers:
        cls, cfg = type(layer).__name__, layer.get_config()
        where = f"layer {layer.name!r} ({cls})"
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise ValueError(f"{where}: data_format {cfg['data_format']!r}; only channels_last is supported")
        if cls == "Conv2D":
            if tuple(cfg["dilation_rate"]) != (1, 1) or cfg.get("groups", 1) != 1 or not cfg["use_bias"]:
                raise ValueError(f"{where}: dilation, groups or use_bias=False are not supported")
            layers.append({"type": "conv2d", "filters": cfg["filters"], "kernel_size": list(cfg["kernel_size"]),
                           "strides": list(cfg["strides"]), "padding": cfg["padding"],
                           "activation": _activation(layer, where)})
        elif cls == "MaxPooling2D":
            if cfg["padding"] != "valid":
                raise ValueError(f"{where}: padding {cfg['padding']!r}; only 'valid' pooling is supported")
            layers.append({"type": "maxpool2d", "pool_size": list(cfg["pool_size"]),
                           "strides": list(cfg["strides"] or cfg["pool_size"])})
        elif cls == "Flatten":
            layers.append({"type": "flatten"})
        elif cls == "Dense":
            if not cfg["use_bias"]:
                raise ValueError(f"{where}: use_bias=False is not supported")
            layers.append({"type": "dense", "units": cfg["units"], "activation": _activation(layer, where)})
        else:
            raise ValueError(f"unsupported {where}; twincnn supports {SUPPORTED}")
    return Spec(tuple(model.input_shape[1:]), tuple(layers))


# What keras.saving.load_model raises for a file that is not a model it can load (Keras 3.15):
# not a zip / empty / truncated .keras -> ValueError; a zip without config.json -> KeyError; a bad
# config.json -> JSONDecodeError (a ValueError); a layer class it does not know -> TypeError;
# a damaged .h5 -> OSError. Only the load_model call is guarded, so bugs in twincnn keep their traceback.
NOT_A_MODEL = (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile)


def load_file(path, spec: Spec | None = None):
    """A saved .keras/.h5 model -> (model rebuilt by twincnn with its weights, spec); ValueError for bad input."""
    try:
        saved = keras.saving.load_model(path, compile=False)
    except NOT_A_MODEL as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"not a Keras model file Keras can load ({type(exc).__name__}: {first})") from None
    derived = spec_from_model(saved)
    if spec is not None and spec != derived:
        raise ValueError(f"the model's layers ({derived.describe()}) do not match --spec ({spec.describe()})")
    params = [layer for layer in saved.layers if layer.weights]
    weights = {}
    for info, layer in zip(derived.param_layers, params):
        kernel, bias = layer.get_weights()
        weights[f"{info.name}/kernel"], weights[f"{info.name}/bias"] = kernel, bias
    model = build(derived)
    set_weights(model, derived, weights)
    return model, derived


def save_file(model, spec: Spec, path) -> None:
    model.save(str(path))
