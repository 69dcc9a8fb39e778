"""Keras 3 on TensorFlow: the Keras twin. What every Keras twin shares is in keras_twin.py; here is what TensorFlow
does its own way: gradients (GradientTape), the tuned step (a tf.function), fit()'s batches from tf.data, threads."""

from __future__ import annotations

import os
import platform

import numpy as np

from .. import quiet
from .keras_start import start

quiet.start()  # TensorFlow's start-up notices kept off stderr (twincnn/quiet.py), unless --verbose
keras = start("tensorflow")
import tensorflow as tf  # noqa: E402

from .. import machine  # noqa: E402
from ..errors import UserError  # noqa: E402
from ..spec import Spec  # noqa: E402
from . import keras_twin  # noqa: E402
from .keras_twin import (  # noqa: E402,F401  the Keras twin's shared functions, under every backend's names
    GELU, LOSS, NOT_A_MODEL, OUTPUT_HEAD, ConstantPadding2D, PaddedAveragePooling2D, build, get_weights, layer_summary,
    load_file, make_optimizer, one_pass_moments, predict, save_file, set_weights, training_variables, without_dropout)
from .interface import TrainerConfig  # noqa: E402

NAME = "tensorflow"
NOTEBOOK_VALIDATION = True  # the notebook's fit() validated every epoch inside the timed call
# fit() given arrays makes a tf.data iterator per epoch and frees the previous one in the next epoch's first
# step; freeing it waits for tf.data's autotuning thread to wake from a timed sleep (docs/results.md).
NOTEBOOK_TIMING = ("a validation pass per epoch, as the notebook timed it, and a wait in each later epoch's first "
                   "step while fit() frees the previous epoch's tf.data iterator (until tf.data's autotuning "
                   "thread wakes: from nothing to about a minute, and waiting for its turn changes how long)")


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
    # 0 means TensorFlow's default: the CPUs this process may run on
    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or machine.usable_cpus(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or machine.usable_cpus()}


def resolve_device(device: str = "cpu") -> str:
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; use cpu or cuda")
    if device == "cuda" and not tf.config.list_physical_devices("GPU"):
        raise UserError("--device cuda: this TensorFlow sees no GPU (tensorflow-cpu?); use --device cpu "
                        "or --frameworks torch")
    if device == "cuda":  # float32 comparisons: no TF32 rounding
        tf.config.experimental.enable_tensor_float_32_execution(False)
    return "/GPU:0" if device == "cuda" else "/CPU:0"


def loss_and_grads(model: keras.Model, spec: Spec, x: np.ndarray, y: np.ndarray):
    """Mean sparse cross-entropy from logits on one batch in training mode (batch statistics, dropout; the
    moving statistics move as in a training step) and the gradients of the trainable weights, watched by name:
    the spec trains every weight, a user's frozen Keras layer too."""
    names, variables, _ = training_variables(model, spec)
    variables = [var.value for var in variables]
    with tf.GradientTape() as tape:
        tape.watch(variables)
        loss = LOSS(tf.constant(y), model(tf.constant(x, tf.float32), training=True))
    grads = tape.gradient(loss, variables)
    return float(loss), {name: np.array(g.numpy()) for name, g in zip(names, grads)}


class Trainer(keras_twin.KerasTrainer):
    """variant 'idiomatic': Keras fit(); 'tuned': a tf.function train step on tensors held in memory."""

    resolve_device = staticmethod(resolve_device)

    def hold_data(self) -> None:
        self.x, self.y = tf.constant(self.x_np), tf.constant(self.y_np)
        self._step = self._make_step()

    def _make_step(self):
        model, optimizer, x, y = self.model, self.optimizer, self.x, self.y
        variables = model.trainable_variables

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def step(idx):
            xb, yb = tf.gather(x, idx), tf.gather(y, idx)
            with tf.GradientTape() as tape:
                loss = LOSS(yb, model(xb, training=True))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        return step

    def tuned_step(self, idx):
        return self._step(tf.constant(idx, tf.int64))

    def batches(self, orders: list, batch_size: int):
        """The shared orders' batches from a tf.data pipeline, as TensorFlow's Keras users feed fit()."""
        x, y = tf.constant(self.x_np), tf.constant(self.y_np)
        return (tf.data.Dataset.from_tensor_slices(np.stack(orders))
                .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
                .map(lambda idx: (tf.gather(x, idx), tf.gather(y, idx)))
                .prefetch(tf.data.AUTOTUNE))


def make_predictor(model, variant: str = "idiomatic"):
    """x (N, H, W, C) -> logits. idiomatic: model.predict(); tuned: a tf.function forward pass."""
    if variant != "tuned":
        return keras_twin.make_predictor(model, variant)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: forward(tf.constant(x)).numpy()


make_trainer = Trainer.from_options


# oneDNN's names for its ISA cap (ONEDNN_MAX_CPU_ISA) -> machine.ISA_LEVELS
_ONEDNN_LEVELS = {"SSE41": "SSE4_1", "AVX": "AVX", "AVX2": "AVX2", "AVX2_VNNI": "AVX2", "AVX2_VNNI_2": "AVX2",
                  "AVX512_CORE": "AVX512", "AVX512_CORE_VNNI": "AVX512", "AVX512_CORE_BF16": "AVX512",
                  "AVX512_CORE_FP16": "AVX512", "AVX512_CORE_AMX": "AVX512", "AVX512_CORE_AMX_FP16": "AVX512"}


def isa() -> str:
    """oneDNN's instruction set (the CPU's, capped by ONEDNN_MAX_CPU_ISA); TensorFlow's own Eigen kernels run
    the instructions the wheel was built for, which no variable changes."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return f"oneDNN {machine.capped_isa(_ONEDNN_LEVELS.get(cap))}"


def environment() -> dict:
    return {
        "framework": "tensorflow", "version": version(), "isa": isa(),
        **configure(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        "python": platform.python_version(),
    }


def _tf_determinism(tf) -> str:
    from tensorflow.python.framework import config as tf_config  # the public API does not export the getter

    getter = getattr(tf_config, "is_op_determinism_enabled", None)
    return str(getter()) if getter else "unknown"


def audit_defaults() -> dict:
    """{`twincnn audit` row key: this framework's default, as text} (backends/defaults.py ROWS)."""
    threads = tf.config.threading
    return {
        **keras_twin.audit_defaults(),
        "intra": f"{threads.get_intra_op_parallelism_threads()} (0 = all {os.cpu_count()} cores)",
        "inter": f"{threads.get_inter_op_parallelism_threads()} (0 = automatic)",
        "tf32": f"on: tensor_float_32_execution_enabled()={tf.config.experimental.tensor_float_32_execution_enabled()}",
        "determinism": f"op determinism={_tf_determinism(tf)}",
        "graph": f"fit() runs a tf.function; {keras_twin.jit_compile_default()}",
        "onednn": f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (on)')}",
    }
