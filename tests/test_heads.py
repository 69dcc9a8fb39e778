"""Models that end in softmax or log-softmax: read with that head, not refused, and worked on before it.

The readers' predict must give the logits (the model's own output is the head applied to them), their loss the
cross-entropy of the logits (which is the loss of the head's output), `check` must name a head that differs while
the logits still agree, and `port` must keep the head wherever the file format carries the architecture."""

import json

import numpy as np
import pytest

from tests.helpers import LOGIT_ATOL, assert_close, require, scaled
from twincnn import reference
from twincnn.spec import FLATTEN, Spec, SpecError, canonical, conv, dense, dropout, pool
from twincnn.weights import random_weights


def images(shape, n=4, seed=0):
    return np.random.default_rng(seed).random((n, *shape), np.float32)


def cross_entropy(logits, y) -> float:
    """The mean of -log softmax(logits)_y, in float64."""
    return float(-reference.apply_head(logits, "log_softmax")[np.arange(len(y)), y].mean())


# -- the NumPy reference's head -----------------------------------------------------------------------------
def test_apply_head_by_hand():
    z = np.array([[0.0, np.log(3.0)], [2.0, 2.0]], np.float32)
    assert reference.apply_head(z, "logits").dtype == np.float64
    np.testing.assert_array_equal(reference.apply_head(z, "logits"), z)
    np.testing.assert_allclose(reference.apply_head(z, "softmax"), [[0.25, 0.75], [0.5, 0.5]], rtol=1e-7)
    np.testing.assert_allclose(reference.apply_head(z, "log_softmax"), np.log([[0.25, 0.75], [0.5, 0.5]]),
                               rtol=1e-7)


def test_apply_head_is_stable_for_large_logits():
    """exp(1000) overflows: the row's maximum is subtracted first."""
    log_probs = reference.apply_head(np.array([[1000.0, 0.0, -1000.0]]), "log_softmax")
    np.testing.assert_allclose(log_probs, [[0.0, -1000.0, -2000.0]], atol=1e-12)
    np.testing.assert_allclose(reference.apply_head(np.array([[1000.0, 0.0]]), "softmax"), [[1.0, 0.0]])


def test_apply_head_refuses_an_unknown_head():
    with pytest.raises(SpecError, match="output must be one of logits, softmax, log_softmax, got 'sigmoid'"):
        reference.apply_head(np.zeros((1, 2)), "sigmoid")


def test_summary_names_the_head():
    from twincnn.summary import summarize

    text, _ = summarize(Spec((8, 8, 1), (conv(4, 3, 2), FLATTEN, dense(10)), "softmax"), frameworks=[])
    assert text.splitlines()[0].endswith("-> fc1(units=10, activation=None) -> softmax")
    assert "output head: softmax over fc1's logits (10,)" in text


# -- Keras -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras():
    return require("tensorflow").keras


def keras_model(keras, ending):
    """conv -> flatten -> 3 class scores, ending in ``ending``'s head; returns (model, the head it means)."""
    layers, image = keras.layers, keras.Input((6, 6, 2))
    features = layers.Flatten()(layers.Conv2D(3, 3, activation="relu")(image))
    heads = {
        "Dense(activation='softmax')": ("softmax", lambda: layers.Dense(3, activation="softmax")(features)),
        "Activation('softmax')": ("softmax", lambda: layers.Activation("softmax")(layers.Dense(3)(features))),
        "Softmax()": ("softmax", lambda: layers.Softmax()(layers.Dense(3)(features))),
        "Activation(log_softmax)": ("log_softmax", lambda: layers.Activation(keras.activations.log_softmax)(
            layers.Dense(3)(features))),
        "Activation('log_softmax')": ("log_softmax", lambda: layers.Activation("log_softmax")(
            layers.Dense(3)(features))),
        "Dense(activation='log_softmax')": ("log_softmax",
                                            lambda: layers.Dense(3, activation="log_softmax")(features)),
    }
    head, output = heads[ending]
    return keras.Model(image, output()), head


KERAS_ENDINGS = ["Dense(activation='softmax')", "Activation('softmax')", "Softmax()", "Activation(log_softmax)",
                 "Activation('log_softmax')", "Dense(activation='log_softmax')"]


@pytest.mark.tensorflow
@pytest.mark.parametrize("ending", KERAS_ENDINGS)
def test_keras_model_ending_in_a_head_reads_it_and_works_on_the_logits(keras, ending):
    from twincnn.backends.tensorflow_read import read_model

    model, head = keras_model(keras, ending)
    read = read_model(model)
    assert read.spec == canonical(Spec((6, 6, 2), (conv(3, 3), FLATTEN, dense(3)), head))
    weights = random_weights(read.spec, 1)
    read.set_weights(weights)
    x, y = images((6, 6, 2)), np.array([0, 1, 2, 1])
    logits = read.predict(x)
    # the logits, not the head's output: the reference's forward pass, and the model's own output through the head
    assert_close(logits, reference.forward(read.spec, weights, x), scaled(LOGIT_ATOL, logits), f"{ending}: logits")
    assert_close(reference.apply_head(logits, head), np.asarray(model(x, training=False)), LOGIT_ATOL,
                 f"{ending}: the head on the read logits vs the model's own output")
    assert_close(read.activations(x)["fc1"], logits, 0, f"{ending}: the last layer's output")
    loss, grads = read.loss_and_grads(x, y)
    assert abs(loss - cross_entropy(logits, y)) <= scaled(LOGIT_ATOL, loss), (loss, cross_entropy(logits, y))
    assert set(grads) == set(read.spec.trainable_weight_shapes())


@pytest.mark.tensorflow
def test_keras_refuses_a_softmax_over_another_axis(keras):
    from twincnn.backends.tensorflow_read import read_model
    from twincnn.errors import UserError

    image = keras.Input((6, 6, 2))
    out = keras.layers.Softmax(axis=0, name="over_batch")(keras.layers.Dense(3)(keras.layers.Flatten()(image)))
    with pytest.raises(UserError, match=r"^over_batch \(Softmax\): .*softmax over axis 0; .*the last axis"):
        read_model(keras.Model(image, out))


@pytest.mark.tensorflow
def test_keras_twin_saves_a_model_ending_in_its_head_and_loads_it_back(keras, tmp_path):
    tfb = require("tensorflow")
    spec = Spec((6, 6, 2), (conv(3, 3), FLATTEN, dense(3)), "log_softmax")
    twin = tfb.build(spec, seed=0)
    tfb.set_weights(twin, spec, random_weights(spec, 2))
    x = images((6, 6, 2))
    logits = tfb.predict(twin, x)  # the twin itself computes the logits
    assert_close(logits, reference.forward(spec, random_weights(spec, 2), x), scaled(LOGIT_ATOL, logits), "twin")
    path = tmp_path / "model.keras"
    tfb.save_file(twin, spec, path)
    saved = keras.saving.load_model(path, compile=False)
    assert type(saved.layers[-1]) is keras.layers.Activation
    assert_close(np.asarray(saved(x)), reference.apply_head(logits, "log_softmax"), LOGIT_ATOL, "saved model")
    model, loaded = tfb.load_file(path, None)
    assert loaded == canonical(spec)
    assert_close(tfb.predict(model, x), logits, 0, "loaded twin's logits")
    # check reads the twin load_file gives (a .keras file named to check): the head must come with it
    from twincnn.backends.tensorflow_read import read_model

    assert read_model(model).spec == canonical(spec)
    with pytest.raises(ValueError, match="do not match --spec"):  # a spec without the head is another spec
        tfb.load_file(path, Spec((6, 6, 2), spec.layers))


# -- PyTorch ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def user_models():
    require("torch")
    require("tensorflow")  # tests/user_models.py holds Keras models too
    from tests import user_models

    return user_models


@pytest.mark.torch
def test_pytorch_examples_mnist_net_reads_with_its_log_softmax(user_models):
    import torch

    from twincnn.backends.torch_read import read_model

    torch.manual_seed(0)
    module = user_models.TorchMnistNet()
    read = read_model(module, (28, 28, 1))
    expected = Spec((28, 28, 1), (conv(32, 3), conv(64, 3), pool(2), dropout(0.25), FLATTEN, dense(128, "relu"),
                                  dropout(0.5), dense(10)), "log_softmax")
    assert read.spec == canonical(expected)
    x, y = images((28, 28, 1)), np.array([3, 1, 4, 1])
    logits = read.predict(x)
    assert_close(logits, reference.forward(read.spec, read.get_weights(), x), scaled(LOGIT_ATOL, logits), "logits")
    with torch.no_grad():
        own = module.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert_close(reference.apply_head(logits, "log_softmax"), own, LOGIT_ATOL, "log_softmax of the read logits")
    torch.manual_seed(1)
    loss, _ = read.loss_and_grads(x, y)  # training mode: dropout draws its own mask, so only its size is known
    assert np.isfinite(loss) and loss > 0


@pytest.mark.torch
def test_pytorch_softmax_module_at_the_end_is_the_head_and_the_loss_is_the_logits(user_models):
    import torch

    from twincnn.backends.torch_read import read_model

    torch.manual_seed(0)
    module = user_models.TorchCNNSoftmax()
    read = read_model(module, (28, 28, 1))
    assert read.spec.output == "softmax" and read.spec.info[-1].type == "dense"
    x, y = images((28, 28, 1)), np.array([0, 9, 2, 7])
    logits = read.predict(x)
    with torch.no_grad():
        own = module.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert_close(reference.apply_head(logits, "softmax"), own, LOGIT_ATOL, "softmax of the read logits")
    loss, _ = read.loss_and_grads(x, y)
    assert abs(loss - cross_entropy(logits, y)) <= scaled(LOGIT_ATOL, loss)


@pytest.mark.torch
def test_pytorch_twin_keeps_its_specs_head_when_read(user_models):
    """check reads twins built from files (a .pt with --spec): the twin computes logits and keeps the head."""
    from twincnn.backends import torch as tb
    from twincnn.backends.torch_read import read_model

    spec = Spec((6, 6, 2), (conv(3, 3), FLATTEN, dense(3)), "softmax")
    assert read_model(tb.build(spec, seed=0), (6, 6, 2)).spec == canonical(spec)


# -- check -----------------------------------------------------------------------------------------------------
@pytest.mark.tensorflow
@pytest.mark.torch
def test_check_names_a_head_that_differs_and_still_compares_the_logits(user_models):
    from twincnn.check import check

    result = check(user_models.keras_cnn_softmax(), user_models.TorchCNNLogSoftmax(), samples=32, adam_step=False)
    lines = result.report.splitlines()
    assert lines[0].endswith(", output softmax)") and lines[1].endswith(", output log_softmax)"), result.report
    assert "  output head: softmax vs log_softmax" in lines, result.report
    assert not result.same_architecture and not result.same
    assert result.comparisons and all(c.ok for c in result.comparisons), result.report
    assert "likely cause: output head" in result.report
    assert result.report.rstrip().endswith("verdict: DIFFERENT")


@pytest.mark.tensorflow
@pytest.mark.torch
def test_check_calls_two_models_with_one_head_the_same(user_models):
    from twincnn.check import check

    result = check(user_models.keras_cnn_softmax(), user_models.TorchCNNSoftmax(), samples=32, adam_step=False)
    assert result.same, result.report
    assert "architecture: the same" in result.report


# -- port ------------------------------------------------------------------------------------------------------
@pytest.mark.tensorflow
@pytest.mark.torch
def test_port_keeps_the_head_where_the_file_carries_the_architecture(tf_and_torch, tmp_path):
    from twincnn.port import port
    from twincnn.weightsfile import load as load_weights

    tfb, _ = tf_and_torch
    spec = Spec((28, 28, 1), (conv(2, 3, 2), FLATTEN, dense(10)), "softmax")
    twin = tfb.build(spec, seed=0)
    tfb.set_weights(twin, spec, random_weights(spec, 3))
    source = tmp_path / "model.keras"
    tfb.save_file(twin, spec, source)
    logged = []

    assert port(source, tmp_path / "w.safetensors", log=logged.append) == 0
    assert load_weights(tmp_path / "w.safetensors")[1] == canonical(spec)
    assert port(tmp_path / "w.safetensors", tmp_path / "back.keras", log=logged.append) == 0
    assert tfb.load_file(tmp_path / "back.keras", None)[1] == canonical(spec)

    assert port(source, tmp_path / "w.pt", log=logged.append) == 0
    assert "holds weights only" in logged[-1] and '"softmax"' in logged[-1]
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    assert port(tmp_path / "w.pt", tmp_path / "from_pt.keras", spec_path=str(spec_file), log=logged.append) == 0
    model, read = tfb.load_file(tmp_path / "from_pt.keras", None)
    assert read == canonical(spec)
    assert_close(tfb.get_weights(model, spec), random_weights(spec, 3), 0, "weights through .pt")
