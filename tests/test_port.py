"""`twincnn port` on models twincnn did not build: a user's Keras model -> the notebook's PyTorch class."""

import json

import numpy as np
import pytest

from tests.helpers import assert_close, assert_same_argmax
from twincnn.cli import main

PORT_ATOL = 1e-4  # port's default --tolerance; observed ~1e-6


@pytest.fixture(scope="module")
def users_keras_model(tmp_path_factory):
    """Written the way the notebook's author wrote it, with random non-zero biases, saved to .keras."""
    from tests.helpers import require

    tfb = require("tensorflow")
    keras = tfb.keras
    keras.utils.set_random_seed(7)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(28, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Conv2D(64, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Conv2D(64, (3, 3), activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(-0.2, 0.2, bias.shape).astype(np.float32)])
    path = tmp_path_factory.mktemp("user") / "model.keras"
    model.save(path)
    return model, path


def test_keras_to_notebook_class(tf_and_torch, users_keras_model, tmp_path, mnist, capsys):
    import torch

    from tests.notebook_cnn import CNN
    from twincnn.backends.torch import to_input

    keras_model, path = users_keras_model
    out = tmp_path / "cnn.pt"
    assert main(["port", str(path), str(out)]) == 0
    assert "max |Δlogit|" in capsys.readouterr().out
    net = CNN()
    net.load_state_dict(torch.load(out, weights_only=True))
    x = mnist.images("test")
    expected = keras_model.predict(x, batch_size=1000, verbose=0)
    with torch.no_grad():
        got = net(to_input(x)).numpy()  # NCHW strides, as twincnn feeds a module
    assert_close(got, expected, PORT_ATOL, "notebook CNN vs the user's Keras model, 10,000 test images")
    assert_same_argmax(got, expected, "ported model")


def test_torch_to_keras(tf_and_torch, tmp_path, mnist):
    import torch

    from tests.notebook_cnn import CNN
    from twincnn.backends.torch import to_input

    torch.manual_seed(3)
    net = CNN()
    src = tmp_path / "nb.pt"
    torch.save(net.state_dict(), src)
    out = tmp_path / "nb.keras"
    assert main(["port", str(src), str(out)]) == 0
    keras_model = tf_and_torch[0].keras.saving.load_model(out)
    x = mnist.images("test")[:2000]
    with torch.no_grad():
        expected = net(to_input(x)).numpy()  # NCHW strides, as twincnn feeds a module
    assert_close(keras_model.predict(x, verbose=0), expected, PORT_ATOL, "Keras port of the notebook CNN")


def test_unsupported_layer_writes_nothing(tf_and_torch, tmp_path, capsys):
    keras = tf_and_torch[0].keras
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3), keras.layers.UpSampling2D(),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    src = tmp_path / "drop.keras"
    model.save(src)
    out = tmp_path / "drop.pt"
    assert main(["port", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert "not expressible in a twincnn spec" in err and "UpSampling2D" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [src]


def test_spec_mismatch_writes_nothing(tf_and_torch, tmp_path, capsys):
    import torch

    from tests.notebook_cnn import CNN

    src = tmp_path / "nb.pt"
    torch.save(CNN().state_dict(), src)
    spec_file = tmp_path / "small.json"
    spec_file.write_text(json.dumps({"input_shape": [28, 28, 1], "layers": [
        {"type": "conv2d", "filters": 8, "kernel_size": 3}, {"type": "flatten"}, {"type": "dense", "units": 10}]}))
    out = tmp_path / "x.keras"
    assert main(["port", str(src), str(out), "--spec", str(spec_file)]) == 2
    err = capsys.readouterr().err
    assert "does not match the spec" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".x*"))


def test_not_a_model_file(tf_and_torch, tmp_path, capsys):
    src = tmp_path / "junk.pt"
    src.write_bytes(b"not a torch file")
    assert main(["port", str(src), str(tmp_path / "o.keras")]) == 2
    assert "not a PyTorch state_dict" in capsys.readouterr().err


def small_mnist(tmp_path, mnist, n_test=300):
    """The first real test digits (and a few training ones, which port ignores): a quick verification set."""
    from tests.mnist_files import write_npz

    return write_npz(tmp_path / "small.npz", {"x_train": mnist.x_train[:10], "y_train": mnist.y_train[:10],
                                             "x_test": mnist.x_test[:n_test], "y_test": mnist.y_test[:n_test]})


def test_tolerance_too_tight_refuses_and_writes_nothing(tf_and_torch, tmp_path, mnist, capsys):
    """Float32 twins differ by rounding (~1e-7): a 1e-12 bar cannot be met, so nothing may be written."""
    import torch

    from tests.notebook_cnn import CNN

    torch.manual_seed(5)
    src = tmp_path / "nb.pt"
    torch.save(CNN().state_dict(), src)
    out = tmp_path / "nb.keras"
    rc = main(["port", str(src), str(out), "--tolerance", "1e-12", "--data", str(small_mnist(tmp_path, mnist))])
    captured = capsys.readouterr()
    assert rc == 2, captured.out + captured.err
    assert "logits differ beyond 1e-12" in captured.err and "not written" in captured.err
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.pt", "small.npz"]


@pytest.mark.parametrize("source,dest,message", [
    ("a.pt", "b.pt", "both are torch files"),
    ("a.keras", "b.h5", "both are tensorflow files"),
    ("a.pt", "b.h5", "Keras 3 saves .keras files"),
    ("a.pt", "b.onnx", "unknown output format '.onnx'"),
])
def test_refused_pairs_write_nothing(tmp_path, capsys, source, dest, message):
    """Refused before any framework loads: these need neither TensorFlow nor PyTorch."""
    (tmp_path / source).write_bytes(b"x")
    assert main(["port", str(tmp_path / source), str(tmp_path / dest)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert [p.name for p in tmp_path.iterdir()] == [source]


def test_spec_written_with_plain_ints_is_accepted(tf_and_torch, users_keras_model, tmp_path, mnist, capsys):
    """`"kernel_size": 3` and Keras's `[3, 3]` describe the same layer: --spec must not refuse the model."""
    _, path = users_keras_model
    spec_file = tmp_path / "notebook.json"
    spec_file.write_text(json.dumps({"input_shape": [28, 28, 1], "layers": [
        {"type": "conv2d", "filters": 28, "kernel_size": 3, "activation": "relu"}, {"type": "maxpool2d"},
        {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "maxpool2d"},
        {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "flatten"},
        {"type": "dense", "units": 64, "activation": "relu"}, {"type": "dense", "units": 10}]}))
    out = tmp_path / "cnn.pt"
    rc = main(["port", str(path), str(out), "--spec", str(spec_file), "--data", str(small_mnist(tmp_path, mnist))])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert out.is_file()
