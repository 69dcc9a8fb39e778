"""Every installed backend module provides the whole interface the rest of twincnn calls."""

import types

import numpy as np
import pytest

from tests.helpers import on_module, require
from twincnn import backends
from twincnn.backends import interface
from twincnn.spec import DEFAULT_SPEC
from twincnn.backends.base import BaseTrainer
from twincnn.weights import initial_weights, worst_mismatch


def test_interface_names_what_the_code_calls():
    """The protocol lists the names src/ calls through `backend.` and `trainer.`: a shrunken protocol fails here."""
    assert {"NAME", "NOTEBOOK_VALIDATION", "NOTEBOOK_TIMING", "Trainer"} <= set(interface.BACKEND_CONSTANTS)
    assert {"version", "configure", "resolve_device", "build", "get_weights", "set_weights", "predict",
            "loss_and_grads", "layer_summary", "make_trainer", "make_predictor", "environment", "load_file",
            "save_file"} <= set(interface.BACKEND_FUNCTIONS)
    assert {"set_data", "step", "train_epoch", "sync", "predict", "run"} <= set(interface.TRAINER_METHODS)


def test_backend_conforms(framework):
    problems = on_module(framework, interface.conformance)
    assert problems == [], f"{framework.NAME}: {'; '.join(problems)}"
    assert on_module(framework, is_backend)


def is_backend(module) -> bool:
    return isinstance(module, interface.Backend)


def made_trainer_is_a_trainer(module) -> bool:
    trainer = module.make_trainer(module.build(DEFAULT_SPEC, seed=0), DEFAULT_SPEC, variant="tuned")
    return isinstance(trainer, module.Trainer) and isinstance(trainer, interface.Trainer)


def test_made_trainer_is_a_trainer(framework):
    assert on_module(framework, made_trainer_is_a_trainer)


@pytest.mark.parametrize("option,value,choices", [("variant", "fast", "idiomatic or tuned"),
                                                   ("adam", "adamw", "keras or native"), ("device", "tpu", "cpu or cuda")])
def test_an_unknown_option_is_refused_alike_by_every_backend(framework, model, spec, option, value, choices):
    with pytest.raises(ValueError, match=f"^unknown {option} '{value}'; use {choices}$"):
        framework.make_trainer(model, spec, **{option: value})
    if option == "variant":
        with pytest.raises(ValueError, match=f"^unknown variant '{value}'; use {choices}$"):
            framework.make_predictor(model, value)


def trainer_config_in_force(module) -> tuple:
    trainer = module.make_trainer(module.build(DEFAULT_SPEC, seed=0), DEFAULT_SPEC, lr=2e-3, adam="native",
                                  variant="tuned", seed=7)
    return isinstance(trainer, BaseTrainer), trainer.config, trainer.variant, trainer.seed


def test_make_trainer_validates_its_options_once_into_the_trainers_config(framework):
    """Every backend's Trainer is a BaseTrainer built from one TrainerConfig: the options given are the
    ones in force (a backend reading a default instead of the caller's value fails here)."""
    is_base, config, variant, seed = on_module(framework, trainer_config_in_force)
    assert is_base
    assert config == interface.TrainerConfig(lr=2e-3, adam="native", variant="tuned", seed=7)
    assert (variant, seed) == ("tuned", 7)


def test_base_trainer_predicts_after_the_queued_steps_have_finished():
    calls = []

    class Recording(BaseTrainer):
        predict_logits = staticmethod(lambda model, x: calls.append(("predict", model)) or x)

        def sync(self):
            calls.append(("sync", None))

    trainer = Recording.from_options("the model", None, variant="tuned")
    assert trainer.predict(3) == 3 and calls == [("sync", None), ("predict", "the model")]
    with pytest.raises(ValueError, match="^unknown adam 'sgd'; use keras or native$"):
        Recording.from_options("the model", None, adam="sgd")


def test_trainer_config_refuses_a_learning_rate_that_is_not_positive():
    for lr in (0.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="the learning rate must be positive"):
            interface.TrainerConfig(lr=lr)
    assert interface.TrainerConfig(variant="tuned", device="cuda").adam == "keras"


def test_trainer_config_refuses_an_epsilon_keras_s_formula_would_not_use():
    for eps in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="^Adam's epsilon must be positive"):
            interface.TrainerConfig(eps=eps)
    with pytest.raises(ValueError, match="^eps sets Keras's Adam formula"):
        interface.TrainerConfig(adam="native", eps=1.0)


def test_adam_s_epsilon_is_the_one_given(framework, spec):
    """One step at lr 1: with the usual epsilon Adam moves some weight by about lr (gradient/|gradient|); with
    epsilon 1e3 far above sqrt(v), by at most lr·|gradient|·0.03/1e3. A backend that kept its default moves
    as far both times."""
    x = np.random.default_rng(0).random((8, *spec.input_shape), np.float32)
    y = np.arange(8) % 10  # the default spec has ten classes

    def moved(eps):
        model = framework.build(spec)
        framework.set_weights(model, spec, initial_weights(spec, 0))
        trainer = framework.make_trainer(model, spec, lr=1.0, eps=eps)
        trainer.set_data(x, y)
        trainer.step(np.arange(8))
        trainer.sync()
        return worst_mismatch(framework.get_weights(model, spec), initial_weights(spec, 0)).max_abs

    usual, large = moved(interface.KERAS_ADAM_EPSILON), moved(1e3)
    assert usual > 0.5 and large < 1e-3, f"{framework.NAME}: moved {usual:.3g} at the usual epsilon, {large:.3g} at 1e3"


def test_notebook_validation_is_keras_only_and_its_timing_says_so(framework):
    """Only Keras's fit() validated inside the notebook's timing (on whichever backend Keras runs); the other loops
    evaluate afterwards. What a notebook epoch's time holds besides its steps names the validation pass where
    there is one."""
    assert framework.NOTEBOOK_VALIDATION is ("keras" in backends.BACKENDS[framework.NAME].model_packages)
    assert ("validation pass" in framework.NOTEBOOK_TIMING) is framework.NOTEBOOK_VALIDATION


@pytest.fixture(params=backends.NATIVE)
def native_framework(request):
    """A native twin's module, whose copies with a name missing or changed test conformance() itself (each twin's
    own conformance is test_backend_conforms')."""
    return require(request.param)


def _fake_backend(framework, drop=None, **replace):
    fake = types.ModuleType("fake_backend")
    for name in interface.BACKEND_CONSTANTS + interface.BACKEND_FUNCTIONS:
        if name != drop:
            setattr(fake, name, getattr(framework, name))
    for name, value in replace.items():
        setattr(fake, name, value)
    return fake


@pytest.mark.parametrize("drop", ["loss_and_grads", "NOTEBOOK_VALIDATION", "save_file"])
def test_a_missing_name_is_reported(native_framework, drop):
    framework = native_framework
    assert interface.conformance(_fake_backend(framework)) == []  # the copy itself conforms
    problems = interface.conformance(_fake_backend(framework, drop=drop))
    assert len(problems) == 1 and drop in problems[0], problems
    assert not isinstance(_fake_backend(framework, drop=drop), interface.Backend)


def test_wrong_kinds_are_reported(native_framework):
    framework = native_framework
    class HalfTrainer:  # no run(), no sync()
        def set_data(self, x, y): ...

        def step(self, idx): ...

        def train_epoch(self, order, batch_size, on_step=None, validation=None): ...

        def predict(self, x): ...

    fake = _fake_backend(framework, NOTEBOOK_VALIDATION="yes", predict=None, Trainer=HalfTrainer)
    problems = interface.conformance(fake)
    assert problems == ["NOTEBOOK_VALIDATION is a str, not a bool", "predict is not callable",
                        "Trainer lacks sync()", "Trainer lacks run()"], problems


def test_wrong_signatures_are_reported(native_framework):
    """A name that is there but takes other parameters (another name, a missing default, a parameter more)
    is reported with both signatures."""
    framework = native_framework
    class OffTrainer(framework.Trainer):
        def step(self, rows): ...  # another parameter name

        def sync(self, timeout): ...  # a parameter more

    def configure(threads): ...  # the default is missing

    def load_file(path, spec=None): ...  # a default the declaration has not

    fake = _fake_backend(framework, configure=configure, load_file=load_file, Trainer=OffTrainer)
    problems = interface.conformance(fake)
    assert problems == ["configure(threads) differs from the declared configure(threads=None)",
                        "load_file(path, spec=None) differs from the declared load_file(path, spec)",
                        "Trainer.step(rows) differs from the declared Trainer.step(idx)",
                        "Trainer.sync(timeout) differs from the declared Trainer.sync()"], problems


def test_the_workers_epoch_clock_is_what_a_trainer_calls():
    """run() calls epoch_start, step and epoch_end: the compare worker's clock has each, with their arguments."""
    import inspect

    from twincnn.backends.interface import Hooks
    from twincnn.compare.worker import EpochClock

    for name in ("epoch_start", "step", "epoch_end"):
        declared = [p for p in inspect.signature(getattr(Hooks, name)).parameters][1:]
        assert [p for p in inspect.signature(getattr(EpochClock, name)).parameters][1:] == declared, name
