"""Keras 3 on JAX: the Keras twin's model (keras_twin.py) with JAX computing it. idiomatic: compile() and fit(),
Keras's JAX trainer (jit_compile on by default); tuned: one jitted step of model.stateless_call and
optimizer.stateless_apply, its state held between steps and written back to the model's variables at sync().
Threads, devices and the instruction-set cap are JAX's own (backends/jax.py)."""

from __future__ import annotations

import weakref

import numpy as np

from .keras_start import start

keras = start("jax")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from . import jax as native  # noqa: E402
from . import keras_twin  # noqa: E402
from .keras_twin import (  # noqa: E402,F401  the Keras twin's shared functions, under every backend's names
    GELU, LOSS, OUTPUT_HEAD, ConstantPadding2D, PaddedAveragePooling2D, build, get_weights, layer_summary, load_file,
    one_pass_moments, predict, save_file, set_weights, training_variables, without_dropout)

NAME = "keras-jax"
NOTEBOOK_VALIDATION = True  # the notebook's Keras code validated every epoch inside the timed fit()
NOTEBOOK_TIMING = "a validation pass per epoch, as the notebook timed Keras's fit()"
configure, resolve_device, isa = native.configure, native.resolve_device, native.isa


def version() -> str:
    return f"keras {keras.__version__} on {native.version()}"


def loss_and_grads(model, spec, x: np.ndarray, y: np.ndarray):
    """Mean cross-entropy in training mode and the gradients of the spec's trainable weights: the model called in a
    keras.StatelessScope that maps every variable to the value JAX traces (for a twin and a user's model as read
    alike), compiled once per model and dropout setting; what the pass assigns (the moving statistics, dropout's
    seed) is written back afterwards, as a step writes it."""
    names, trainable, _ = training_variables(model, spec)
    differentiated = {id(var) for var in trainable}
    others = [var for var in _all_variables(model) if id(var) not in differentiated]
    rates = tuple(layer.rate for layer in keras_twin.dropout_layers(model))  # read when traced: part of the key
    compiled = _GRADIENTS.setdefault(model, {})
    if rates not in compiled:
        compiled[rates] = _gradient_program(model, trainable, others)
    (loss, after), grads = compiled[rates]([var.value for var in trainable], [var.value for var in others],
                                           jnp.asarray(x, jnp.float32), jnp.asarray(y))
    for var, value in zip(others, after):
        var.assign(value)
    return float(loss), {name: np.asarray(g) for name, g in zip(names, grads)}


_GRADIENTS = weakref.WeakKeyDictionary()  # model -> {dropout rates: its compiled loss-and-gradients}


def _gradient_program(model, trainable: list, others: list):
    def loss_of(values, other_values, x, y):
        mapping = list(zip(trainable, values)) + list(zip(others, other_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            loss = LOSS(y, model(x, training=True))
        return loss, [scope.get_current_value(var) for var in others]

    return jax.jit(jax.value_and_grad(loss_of, has_aux=True))


def _all_variables(model) -> list:
    """Every variable of a twin, or of a user's model as read (tensorflow_read.ReadNet keeps it as .model)."""
    return list(getattr(model, "model", model).variables)


class Trainer(keras_twin.KerasTrainer):
    """idiomatic: Keras fit(); tuned: a jitted stateless step on arrays held on the device."""

    resolve_device = staticmethod(resolve_device)
    state = None  # tuned: (trainable, non-trainable, optimizer) values, newer than the model's variables

    def hold_data(self) -> None:
        self.x, self.y = jnp.asarray(self.x_np), jnp.asarray(self.y_np)
        self.optimizer.build(self.model.trainable_variables)
        self.state = tuple([var.value for var in variables] for variables in
                           (self.model.trainable_variables, self.model.non_trainable_variables,
                            self.optimizer.variables))
        self._step = jax.jit(self._stateless_step)

    def _stateless_step(self, state, x, y, idx):
        trainable, non_trainable, optimizer_values = state

        def loss_of(trainable, non_trainable):
            logits, non_trainable = self.model.stateless_call(trainable, non_trainable, x[idx], training=True)
            return LOSS(y[idx], logits), non_trainable

        (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable, non_trainable)
        trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, trainable)
        return (trainable, non_trainable, optimizer_values), loss

    def tuned_step(self, idx):
        self.state, loss = self._step(self.state, self.x, self.y, jnp.asarray(idx))
        return loss

    def sync(self) -> None:
        """Wait for the queued steps and give the model their weights (predict and get_weights read the model)."""
        if self.state is None:
            return
        jax.block_until_ready(self.state)
        for variables, values in zip((self.model.trainable_variables, self.model.non_trainable_variables,
                                      self.optimizer.variables), self.state):
            for var, value in zip(variables, values):
                var.assign(value)


def make_predictor(model, variant: str = "idiomatic"):
    """x (N, H, W, C) -> logits. idiomatic: model.predict(); tuned: a jitted model.stateless_call."""
    if variant != "tuned":
        return keras_twin.make_predictor(model, variant)
    forward = jax.jit(lambda trainable, rest, x: model.stateless_call(trainable, rest, x, training=False)[0])
    return lambda x: np.asarray(forward([v.value for v in model.trainable_variables],
                                        [v.value for v in model.non_trainable_variables], x))


make_trainer = Trainer.from_options


def environment() -> dict:
    return keras_twin.environment_on(native, NAME)


def audit_defaults() -> dict:
    """{`twincnn audit` row key: this twin's default, as text}: Keras's, and JAX's where Keras leaves it to it."""
    return keras_twin.audit_defaults_on(native, "fit() runs a jitted step")
