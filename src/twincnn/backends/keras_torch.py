"""Keras 3 on PyTorch: the Keras twin's model (keras_twin.py) with PyTorch computing it. idiomatic: compile() and
fit(), Keras's torch trainer (eager by default); tuned: the step that trainer takes, without fit()'s machinery
around it: the model called, backward(), optimizer.apply() (Keras's torch Adam). Threads, devices and the
instruction-set cap are PyTorch's own (backends/torch.py)."""

from __future__ import annotations

import numpy as np

from .keras_start import start

keras = start("torch")
import torch  # noqa: E402

from . import keras_twin  # noqa: E402
from . import torch as native  # noqa: E402
from .keras_twin import (  # noqa: E402,F401  the Keras twin's shared functions, under every backend's names
    GELU, LOSS, OUTPUT_HEAD, ConstantPadding2D, PaddedAveragePooling2D, build, get_weights, layer_summary, load_file,
    one_pass_moments, predict, save_file, set_weights, training_variables, without_dropout)

NAME = "keras-torch"
NOTEBOOK_VALIDATION = True  # the notebook's Keras code validated every epoch inside the timed fit()
NOTEBOOK_TIMING = "a validation pass per epoch, as the notebook timed Keras's fit()"
configure, isa = native.configure, native.isa


def version() -> str:
    return f"keras {keras.__version__} on {native.version()}"


def resolve_device(device: str = "cpu"):
    return native.resolve_device(device)


def loss_and_grads(model, spec, x: np.ndarray, y: np.ndarray):
    """Mean cross-entropy in training mode (the moving statistics move, as in a step) and the gradients of the
    spec's trainable weights, from autograd; for a twin and a user's model as read alike."""
    names, trainable, _ = training_variables(model, spec)
    loss = LOSS(keras.ops.convert_to_tensor(y), model(keras.ops.convert_to_tensor(x, "float32"), training=True))
    grads = torch.autograd.grad(loss, [var.value for var in trainable])
    return float(loss.detach()), {name: g.detach().cpu().numpy() for name, g in zip(names, grads)}


class Trainer(keras_twin.KerasTrainer):
    """idiomatic: Keras fit(); tuned: Keras's own torch train step on tensors held on the device."""

    resolve_device = staticmethod(resolve_device)

    def hold_data(self) -> None:
        self.x, self.y = keras.ops.convert_to_tensor(self.x_np), keras.ops.convert_to_tensor(self.y_np)
        self.variables = self.model.trainable_variables
        self.optimizer.build(self.variables)

    def tuned_step(self, idx):
        idx = torch.as_tensor(idx, device=self.x.device)
        loss = LOSS(self.y[idx], self.model(self.x[idx], training=True))
        self.model.zero_grad()
        loss.backward()
        with torch.no_grad():
            self.optimizer.apply([var.value.grad for var in self.variables], self.variables)
        return loss.detach()

    def sync(self) -> None:
        if self.variant == "tuned" and self.config.device == "cuda":
            torch.cuda.synchronize()


def make_predictor(model, variant: str = "idiomatic"):
    """x (N, H, W, C) -> logits. idiomatic: model.predict(); tuned: the model called under torch.no_grad()."""
    if variant != "tuned":
        return keras_twin.make_predictor(model, variant)

    def forward(x):
        with torch.no_grad():
            return keras.ops.convert_to_numpy(model(keras.ops.convert_to_tensor(x), training=False))

    return forward


make_trainer = Trainer.from_options


def environment() -> dict:
    return keras_twin.environment_on(native, NAME)


def audit_defaults() -> dict:
    """{`twincnn audit` row key: this twin's default, as text}: Keras's, and PyTorch's where Keras leaves it to it."""
    return keras_twin.audit_defaults_on(native, "fit() runs the step eagerly unless compiled")
