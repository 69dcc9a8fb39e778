"""`twincnn check A B` on users' own models: the same function is called the same, and each known mistake
(a missing ReLU, padding on the wrong side, another BatchNorm momentum) is called different and located."""

import pytest

from tests.helpers import require
from twincnn import backends, cli
from twincnn.check import check
from twincnn.sources import load_source



@pytest.fixture(autouse=True, scope="module")
def both_frameworks():
    """Every test here reads a Keras model and a PyTorch module; without both they skip, saying what to install."""
    require("tensorflow")
    require("torch")


MODELS = "tests/user_models.py"


def run_check(capsys, *args):
    code = cli.main(["check", *args, "--samples", "64"])
    return code, capsys.readouterr()


def test_the_notebooks_two_models_are_the_same_function(capsys):
    code, out = run_check(capsys, f"{MODELS}:keras_cnn", f"{MODELS}:torch_cnn")
    assert code == 0, out.out
    assert "architecture: the same" in out.out
    assert "verdict: the same function" in out.out
    for what in ("logits (inference mode)", "gradients (training mode", "one Adam step"):
        assert what in out.out


def test_a_missing_relu_is_located(capsys):
    code, out = run_check(capsys, f"{MODELS}:keras_cnn", f"{MODELS}:TorchCNNWithoutSecondReLU")
    assert code == 1, out.out
    assert "A's act2 (activation): only in A" in out.out
    assert "first layer whose output differs (inference mode): A's act2" in out.out
    assert out.out.rstrip().endswith("verdict: DIFFERENT")


def test_padding_on_the_other_side_is_an_architecture_difference_at_that_convolution():
    from tests import user_models

    result = check(user_models.keras_strided(), user_models.torch_strided_symmetric_padding(), samples=32)
    assert not result.same_architecture and not result.same
    assert "conv1" in result.report and "padding: ((0, 1), (0, 1)) vs ((1, 1), (1, 1))" in result.report
    assert result.first_divergence.startswith("conv1 (conv2d;"), result.report
    assert "likely cause: padding side" in result.report
    logits = next(c for c in result.comparisons if c.what.startswith("logits"))
    assert not logits.ok, "weights copied into a differently padded model gave the same logits"


def test_stock_batchnorm_agrees_in_inference_and_its_unbiased_running_variance_is_called_out():
    """Keras's 'same' written as a ZeroPad2d: the same architecture; nn.BatchNorm2d's running variance moves
    by the unbiased batch variance, which is what differs, and the note says so."""
    from tests import user_models

    result = check(user_models.keras_strided(), user_models.TorchStrided(), samples=32)
    assert result.same_architecture, result.report
    verdicts = {c.what.split(" (")[0]: c.ok for c in result.comparisons}
    assert verdicts == {"logits": True, "loss": True, "gradients": True, "moving statistics after that pass": False,
                        "one Adam step": True}, result.report
    assert "running variance is unbiased" in result.report
    assert "every layer's inference-mode output agrees" in result.report


@pytest.mark.parametrize("name", ["resnet8", "mobilenetv2_block"])
def test_twincnns_own_twins_of_a_residual_network_are_the_same_function(name):
    from twincnn import backends, zoo

    spec = zoo.load(name)
    result = check(backends.load("tensorflow").build(spec, seed=0), backends.load("torch").build(spec, seed=1),
                   samples=32)
    assert result.same, result.report


def test_another_batchnorm_momentum_is_named_and_moves_the_statistics_differently():
    from tests import user_models

    result = check(user_models.keras_strided(), user_models.torch_strided_other_momentum(), samples=32)
    assert "momentum: 0.9 vs 0.99" in result.report, result.report
    assert "likely cause: BatchNorm's momentum convention" in result.report
    moving = next(c for c in result.comparisons if c.what.startswith("moving statistics"))
    assert not moving.ok, result.report


def test_keep_weights_compares_two_models_as_they_are(capsys):
    code, out = run_check(capsys, f"{MODELS}:keras_cnn", f"{MODELS}:torch_cnn", "--keep-weights")
    assert code == 1, "two independently initialised models were called the same function"
    assert "weights: each model's own" in out.out


def test_saved_files_are_read_too(tmp_path, capsys):
    from tests import user_models

    keras_file = tmp_path / "model.keras"
    user_models.keras_cnn().save(keras_file)
    twin = tmp_path / "twin.pt"
    assert cli.main(["port", str(keras_file), str(twin)]) == 0
    capsys.readouterr()
    code, out = run_check(capsys, str(keras_file), str(twin))
    assert code == 0, out.out
    neutral = tmp_path / "weights.safetensors"  # canonical weights, the spec in its metadata
    assert cli.main(["port", str(keras_file), str(neutral)]) == 0
    capsys.readouterr()
    code, out = run_check(capsys, str(keras_file), str(neutral), "--keep-weights")
    assert code == 0, out.out


@pytest.mark.parametrize("source, message", [
    (f"{MODELS}:no_such_name", "defines no 'no_such_name'"),
    (f"{MODELS}:not_a_model", "is no model of a known framework"),
    ("missing.py:model", "missing.py: no such file"),
    ("model.onnx", "model.onnx: no such file"),
])
def test_bad_sources_are_refused_in_one_line(source, message, capsys):
    code, out = run_check(capsys, source, f"{MODELS}:torch_cnn")
    assert code == 2
    assert message in out.err and len(out.err.strip().splitlines()) == 1, out.err


def test_a_bad_input_shape_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", f"{MODELS}:keras_cnn", f"{MODELS}:torch_cnn", "--input-shape", "28,28"])
    assert exit_.value.code == 2
    assert "expected H,W,C" in capsys.readouterr().err


def test_a_factory_returning_a_model_object_is_read_as_is():
    model = load_source(f"{MODELS}:keras_cnn")
    assert type(model).__module__.startswith("keras")


PLUGIN_TESTS = '''
import keras
import torch.nn as nn


def keras_model():
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(5, activation="relu"),
                             keras.layers.Dense(3)])


def test_same(twin_check):
    twin_check(keras_model(), nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Linear(5, 3)), samples=8)


def test_missing_relu(twin_check):
    twin_check(keras_model(), nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.Linear(5, 3)), samples=8)
'''


def test_the_pytest_plugin_gives_users_a_twin_check_fixture(pytester):
    """The installed entry point registers the fixture in any project's pytest run."""
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*the two models are not the same function*",
                                 "*A's act1 (activation*only in A*"])


def test_a_flax_module_is_refused_naming_the_frameworks_that_are_read():
    require("jax")
    from flax import nnx

    from twincnn.errors import UserError

    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    with pytest.raises(UserError, match=r"does not read JAX/Flax models yet; it reads Keras, PyTorch models"):
        check(model, model)


def test_a_functional_residual_keras_file_ports_and_checks(tmp_path, capsys):
    """A saved functional model with residual additions: `port` reads it (the Keras reader), and `check`
    finds the .pt it wrote (a state_dict, so with --spec) the same function."""
    from twincnn import backends, zoo

    keras_file, state_dict = tmp_path / "resnet8.keras", tmp_path / "resnet8.pt"
    backends.load("tensorflow").build(zoo.load("resnet8"), seed=3).save(keras_file)
    assert cli.main(["port", str(keras_file), str(state_dict)]) == 0
    capsys.readouterr()
    code, out = run_check(capsys, str(keras_file), str(state_dict), "--spec", "zoo:resnet8", "--keep-weights")
    assert code == 0, out.out + out.err


def test_assert_same_function_takes_inputs_one_tolerance_and_leaves_out_what_is_asked():
    import numpy as np

    from tests import user_models
    from twincnn.testing import assert_same_function

    x = np.random.default_rng(1).random((6, 28, 28, 1), dtype=np.float32)
    result = assert_same_function(user_models.keras_cnn(), user_models.torch_cnn(), inputs=x, gradients=False)
    assert [c.what for c in result.comparisons] == ["logits (inference mode)"]
    assert "the 6 inputs given" in result.report
    with pytest.raises(AssertionError, match="the two models are not the same function"):
        assert_same_function(user_models.keras_cnn(), user_models.torch_cnn(), inputs=x, atol=0.0, adam_step=False)
    with pytest.raises(AssertionError, match="likely cause: a missing activation: only A applies relu after conv2"):
        assert_same_function(user_models.keras_cnn(), user_models.TorchCNNWithoutSecondReLU(), inputs=x)


def test_the_documented_example_test_file_passes(pytester):
    """docs/equivalence.md's test file, copied as a user would, passes."""
    from pathlib import Path

    docs = (Path(__file__).parents[1] / "docs" / "equivalence.md").read_text()
    marker = "# test_my_port.py: run with pytest wherever twincnn is installed\n"
    pytester.makepyfile(test_my_port=docs.split(marker)[1].split("```")[0])
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize("framework", list(backends.BACKENDS))
def test_twin_of_a_users_model_is_the_same_function_in_every_framework(framework, capsys):
    """B is twincnn's twin of A's spec, with A's weights copied in: 'same' padding on a stride, BatchNorm."""
    require(framework)
    code, out = run_check(capsys, f"{MODELS}:keras_strided", "--twin", framework)
    assert code == 0, out.out
    assert f"B: --twin {framework} (twincnn's " in out.out and "architecture: the same" in out.out
    for what in ("logits (inference mode)", "gradients (training mode", "moving statistics", "one Adam step"):
        assert what in out.out


@pytest.mark.parametrize("source, twin", [("TorchMnistNet", "tensorflow"), ("TorchMnistNet", "jax"),
                                          ("keras_mnist_convnet", "torch"), ("TorchMnistNet", "keras-jax"),
                                          ("keras_mnist_convnet", "keras-torch")])
def test_a_model_with_dropout_is_the_same_function_as_its_twin(source, twin):
    """Dropout draws its masks at random: the training-mode passes are compared with it off in both models, and
    each dropout layer has its own rate back afterwards."""
    require(twin)
    from twincnn.sources import TwinOf

    model = load_source(f"{MODELS}:{source}")
    result = check(model, TwinOf(twin), samples=64)
    assert result.same, result.report
    assert "gradients (training mode, dropout off;" in result.report
    rates = ([model.dropout1.p, model.dropout2.p] if source.startswith("Torch")
             else [layer.rate for layer in model.layers if "dropout" in layer.name])
    assert rates == ([0.25, 0.5] if source.startswith("Torch") else [0.5])


def test_a_twin_is_held_to_the_users_model_not_to_its_own_weights(monkeypatch):
    """A twin that kept its own initial weights instead of A's is called different, at its first layer."""
    from twincnn.backends import torch as torch_backend
    from twincnn.sources import TwinOf

    monkeypatch.setattr(torch_backend, "set_weights", lambda model, spec, weights: None)
    result = check(load_source(f"{MODELS}:keras_strided"), TwinOf("torch"), samples=32)
    assert not result.same and "conv1 (conv2d" in result.first_divergence


@pytest.mark.parametrize("args, message", [
    ([f"{MODELS}:keras_cnn"], "name a second model B, or --twin FRAMEWORK"),
    ([f"{MODELS}:keras_cnn", f"{MODELS}:torch_cnn", "--twin", "torch"], "name a second model B, or --twin"),
    ([f"{MODELS}:keras_cnn", "--twin", "torch", "--keep-weights"], "--twin builds B with A's weights"),
    ([f"{MODELS}:keras_cnn", "--twin", "caffe"], "unknown framework 'caffe'"),
])
def test_twin_options_are_refused_in_one_line(args, message, capsys):
    code, out = run_check(capsys, *args)
    assert code == 2 and out.err.count("\n") == 1 and message in out.err, out.err
