"""What a backend module must provide: every module-level name the rest of twincnn calls.

A backend is a module, not a class, so ``Backend`` describes a module's attributes. ``conformance()``
reports every missing name, wrong kind and signature that differs from the one declared here (parameter
names, kinds and defaults), so a new twin can be checked before anything runs it.
Conventions shared by all backends: inputs are float32 NumPy (N, H, W, C); weights are canonical NumPy
dicts (spec.py); load_file raises ValueError, with a one-line message, for a file that is not a usable model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Protocol, runtime_checkable

import numpy as np

from ..spec import Spec


VARIANTS = ("idiomatic", "tuned")
KERAS_ADAM_EPSILON = 1e-7
ADAMS = ("keras", "native")  # Keras's Adam formula (the fair protocol), or the framework's own
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class TrainerConfig:
    """The options every backend's Trainer takes, checked here for all of them: an unknown value is a
    ValueError naming the choices, never run as some other variant."""

    lr: float = 1e-3
    adam: str = "keras"
    variant: str = "idiomatic"
    device: str = "cpu"
    seed: int = 0
    eps: float = KERAS_ADAM_EPSILON  # in Keras's formula (adam='keras'); 'native' keeps the framework's own

    def __post_init__(self):
        for name, choices in (("variant", VARIANTS), ("adam", ADAMS), ("device", DEVICES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; use {' or '.join(choices)}")
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be positive, not {self.lr!r}")
        if not self.eps > 0:
            raise ValueError(f"Adam's epsilon must be positive, not {self.eps!r}")
        if self.adam == "native" and self.eps != KERAS_ADAM_EPSILON:
            raise ValueError("eps sets Keras's Adam formula (adam='keras'); adam='native' keeps the framework's own")


@runtime_checkable
class Hooks(Protocol):
    """What a trainer's run() tells its caller (the compare worker: the clock and the turn-taking)."""

    def epoch_start(self, epoch: int) -> None:
        """May block until this twin's turn; the epoch's clock starts when it returns."""

    def step(self, done: int) -> None:
        """``done`` steps of the epoch have been queued."""

    def epoch_end(self, epoch: int, train_loss: float) -> None:
        """The epoch has finished on the device; its clock stops."""


@runtime_checkable
class Trainer(Protocol):
    """Trains one twin on data it holds; batches are row indices, so every twin sees the same ones."""

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        """Hold the training set (where the variant keeps it: host or device)."""

    def step(self, idx) -> Any:
        """One optimiser step on rows ``idx``; returns the loss (possibly not yet computed on the device)."""

    def train_epoch(self, order, batch_size: int, on_step: Callable[[int], None] | None = None,
                    validation=None) -> float:
        """One epoch over ``order`` (None: the framework shuffles itself); the mean training loss."""

    def sync(self) -> None:
        """Wait until every queued step has finished (timings are taken after it)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits for ``x`` from the current weights."""

    def run(self, epochs: int, batch_size: int, order_for_epoch: Callable[[int], Any], hooks: Hooks,
            validation=None) -> None:
        """Train ``epochs`` epochs, calling hooks.epoch_start(epoch), hooks.step(done), hooks.epoch_end(epoch, loss)."""


@runtime_checkable
class Backend(Protocol):
    """A backend module (twincnn.backends.<name>)."""

    NAME: str  # the registry name
    NOTEBOOK_VALIDATION: bool  # the notebook protocol validates on the test set inside the timed epoch
    NOTEBOOK_TIMING: str  # what the notebook protocol's timed epochs hold besides training steps ("" if nothing)
    Trainer: type  # the class make_trainer() returns

    def version(self) -> str: ...

    def configure(self, threads: int | None = None) -> dict:
        """Set intra-op threads where still possible; return what is in force (intra_op_threads, ...)."""

    def resolve_device(self, device: str = "cpu") -> Any:
        """The framework's device for 'cpu' or 'cuda'; UserError if it has none such."""

    def build(self, spec: Spec, seed: int | None = None, device: str = "cpu") -> Any:
        """The twin with the framework's own initialisers. It computes the logits whatever spec.output: the head
        is applied only where the model's own output is asked for (save_file)."""

    def get_weights(self, model, spec: Spec) -> dict[str, np.ndarray]: ...

    def set_weights(self, model, spec: Spec, weights: dict) -> None: ...

    def predict(self, model, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Logits in inference mode: BatchNorm's moving statistics, no dropout."""

    def loss_and_grads(self, model, spec: Spec, x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
        """Mean cross-entropy in training mode (batch statistics, dropout; moving statistics updated as by a
        step) and the gradients of spec.trainable_weight_shapes(), canonical, in that order. Of the logits, with
        or without an output head: -log softmax(z)_y is also the NLL of log_softmax(z), so it is the loss of
        either head's output."""

    def without_dropout(self, model) -> ContextManager[None]:
        """Inside, the model's dropout layers pass their input through in training mode too, as the NumPy
        reference's do, so that a training-mode pass is a function of the weights and the batch alone (its masks
        are random); each layer's rate as it was afterwards. For a twin and a user's model as read alike."""

    def layer_summary(self, model, spec: Spec) -> list[tuple[str, tuple, int]]:
        """(name, output shape, weights incl. BatchNorm's moving statistics) per spec layer, changing nothing."""

    def make_trainer(self, model, spec: Spec, **kwargs) -> Trainer:
        """kwargs: lr, adam ('keras' or 'native'), eps (Keras's formula), variant ('idiomatic' or 'tuned'),
        device, seed, metrics."""

    def make_predictor(self, model, variant: str = "idiomatic") -> Callable[[np.ndarray], np.ndarray]: ...

    def isa(self) -> str:
        """The CPU instruction set the framework's kernels run at (the CPU's, under its own cap variable)."""

    def environment(self) -> dict:
        """What results.json records of the framework: version, threads, isa(), ..."""

    def audit_defaults(self) -> dict:
        """{`twincnn audit` row key (backends/defaults.py ROWS): the framework's default, as text}, read
        from the installed framework; a key it does not know shows as n/a."""

    def load_file(self, path, spec: Spec | None) -> tuple[Any, Spec]: ...

    def save_file(self, model, spec: Spec, path) -> None:
        """Write the twin; a format that carries the architecture ends the model in spec.output's head."""


@dataclass
class ReadModel:
    """A model seen as a spec: a user's model as its framework's reader reads it, or twincnn's own twin of a
    spec (check --twin). Weights, logits and gradients go through the backend's own get_weights, set_weights,
    predict and loss_and_grads, the functions every twin is tested through; ``model`` is what they take (a
    reader wraps the user's model so that they can). ``activations`` gives every spec layer's output, which
    only locates where two models part."""

    backend: Any  # the backend module (twincnn.backends.<name>)
    model: Any
    spec: Spec
    activations: Callable[[np.ndarray], dict]
    notes: list = field(default_factory=list)  # where the model computes something the spec does not say exactly
    paths: dict = field(default_factory=dict)  # spec layer name -> where in the model it was read from
    label: str = ""  # what tables call it, where the model's framework alone does not say (a twin)

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.backend.get_weights(self.model, self.spec)

    def set_weights(self, weights: dict) -> None:
        self.backend.set_weights(self.model, self.spec, weights)

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        return self.backend.predict(self.model, x, batch_size)

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
        return self.backend.loss_and_grads(self.model, self.spec, x, y)

    def without_dropout(self) -> ContextManager[None]:
        return self.backend.without_dropout(self.model)


def _members(protocol) -> tuple[list[str], list[str]]:
    """(callable names, data names) a protocol declares, in declaration order."""
    callables = [name for name, value in vars(protocol).items()
                 if callable(value) and not name.startswith("_")]
    data = [name for name in getattr(protocol, "__annotations__", {}) if name not in callables]
    return callables, data


BACKEND_FUNCTIONS, BACKEND_CONSTANTS = _members(Backend)
TRAINER_METHODS, _ = _members(Trainer)
_TYPES = {"NAME": str, "NOTEBOOK_VALIDATION": bool, "NOTEBOOK_TIMING": str, "Trainer": type}


def _plain_signature(function, bound: bool) -> inspect.Signature:
    """Parameter names, kinds and defaults, without annotations; ``bound``: without the first (self)."""
    parameters = list(inspect.signature(function).parameters.values())[1 if bound else 0:]
    return inspect.Signature([p.replace(annotation=inspect.Parameter.empty) for p in parameters])


def _signature_problem(label: str, actual, declared, bound: bool) -> list[str]:
    got, want = _plain_signature(actual, bound), _plain_signature(declared, True)
    return [] if got == want else [f"{label}{got} differs from the declared {label}{want}"]


def conformance(module) -> list[str]:
    """Every way ``module`` falls short of Backend (and its Trainer class of Trainer); empty if none."""
    problems = []
    for name in BACKEND_CONSTANTS:
        if not hasattr(module, name):
            problems.append(f"missing {name}")
        elif not isinstance(getattr(module, name), _TYPES[name]):
            problems.append(f"{name} is a {type(getattr(module, name)).__name__}, not a {_TYPES[name].__name__}")
    for name in BACKEND_FUNCTIONS:
        if not callable(getattr(module, name, None)):
            problems.append(f"missing function {name}()" if not hasattr(module, name) else f"{name} is not callable")
        else:
            problems += _signature_problem(name, getattr(module, name), getattr(Backend, name), bound=False)
    trainer = getattr(module, "Trainer", None)
    if isinstance(trainer, type):
        for name in TRAINER_METHODS:
            if not callable(getattr(trainer, name, None)):
                problems.append(f"Trainer lacks {name}()")
            else:
                problems += _signature_problem(f"Trainer.{name}", getattr(trainer, name), getattr(Trainer, name),
                                               bound=True)
    return problems
