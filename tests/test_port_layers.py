"""`twincnn port` with the zoo's layer types: a Keras model with BatchNorm after training (moving statistics
away from 0 and 1), Dropout, global average pooling and a 'same' stride-2 convolution -> .pt and back, and
-> the neutral .safetensors file (checked against the NumPy reference); Keras activations as the spec reads them."""

import json
import re

import numpy as np
import pytest

from tests.helpers import assert_close, assert_same_argmax
from twincnn.cli import main
from twincnn.errors import UserError

PORT_ATOL = 1e-4  # the bar for a ported model; observed ~1e-6


@pytest.fixture(scope="module")
def trained_bn_model(tmp_path_factory, mnist):
    from tests.helpers import require

    keras = require("tensorflow").keras
    keras.utils.set_random_seed(11)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),  # 14x14: padding (0, 1)
        keras.layers.BatchNormalization(),  # Keras's momentum, 0.99
        keras.layers.Conv2D(32, 3, padding="same", activation=keras.layers.LeakyReLU(negative_slope=0.1)),
        keras.layers.BatchNormalization(momentum=0.9),
        keras.layers.Dropout(0.3),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(32, activation="gelu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(mnist.images("train")[:3200], mnist.labels("train")[:3200], batch_size=64, epochs=1, verbose=0)
    for layer in model.layers:  # 50 steps moved the moving statistics away from their initial 0 and 1
        if isinstance(layer, keras.layers.BatchNormalization):
            assert np.abs(layer.moving_mean.numpy()).max() > 0.01, layer.name
            assert np.abs(layer.moving_variance.numpy() - 1).max() > 0.01, layer.name
    path = tmp_path_factory.mktemp("bn") / "bn.keras"
    model.save(path)
    return model, path


def reported_delta(out: str) -> float:
    return float(re.search(r"max \|Δlogit\| = (\S+),", out).group(1))


def test_trained_batchnorm_model_to_torch_and_back(tf_and_torch, trained_bn_model, tmp_path, mnist, capsys):
    keras_model, path = trained_bn_model
    tfb, tb = tf_and_torch
    from twincnn.backends.tensorflow_read import read_model

    spec = read_model(keras_model).spec
    assert [i.type for i in spec.info] == ["conv2d", "activation", "batchnorm", "conv2d", "activation", "batchnorm",
                                           "dropout", "globalavgpool2d", "dense", "activation", "dropout", "dense"]
    x = mnist.images("test")
    expected = keras_model.predict(x, batch_size=1000, verbose=0)  # inference mode: moving statistics

    out = tmp_path / "bn.pt"
    assert main(["port", str(path), str(out)]) == 0
    report = [f"Keras -> PyTorch, twincnn port: {capsys.readouterr().out.strip().splitlines()[1]}"]
    net, _ = tb.load_file(out, spec)
    got = tb.predict(net, x)
    m = assert_close(got, expected, PORT_ATOL, "PyTorch port of a trained BatchNorm model, 10,000 test images")
    assert_same_argmax(got, expected, "PyTorch port")
    report.append(f"PyTorch logits (inference mode) vs Keras's: {m}, argmax agreement 100 %")
    import torch

    with torch.no_grad():  # the moving statistics matter: without them the logits are far off
        for bn in (net.bn1, net.bn2):
            bn.running_mean.zero_()
            bn.running_var.fill_(1)
    assert np.abs(tb.predict(net, x[:500]) - expected[:500]).max() > 100 * PORT_ATOL

    spec_file = tmp_path / "bn.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    back = tmp_path / "back.keras"
    assert main(["port", str(out), str(back), "--spec", str(spec_file)]) == 0
    assert reported_delta(capsys.readouterr().out) <= PORT_ATOL
    again = tfb.keras.saving.load_model(back).predict(x, batch_size=1000, verbose=0)
    m = assert_close(again, expected, PORT_ATOL, "the Keras model ported to PyTorch and back")
    assert_same_argmax(again, expected, "round trip")
    report.append(f"Keras -> PyTorch -> Keras: {m}")
    with capsys.disabled():
        print("\n".join(report))


def test_trained_batchnorm_model_to_safetensors_and_torch(tf_and_torch, trained_bn_model, tmp_path, capsys):
    """The neutral file is verified against the plain NumPy forward pass, and reads into PyTorch."""
    _, path = trained_bn_model
    neutral = tmp_path / "bn.safetensors"
    assert main(["port", str(path), str(neutral)]) == 0
    delta = reported_delta(capsys.readouterr().out)
    assert delta <= PORT_ATOL
    with capsys.disabled():
        print(f"Keras -> .safetensors (NumPy reference): max |Δlogit| {delta:.3g}")
    assert main(["port", str(neutral), str(tmp_path / "bn.pt")]) == 0
    assert reported_delta(capsys.readouterr().out) <= PORT_ATOL


def test_stock_torch_batchnorm_state_dict_loads(tf_and_torch, tmp_path):
    """A state_dict from nn.BatchNorm2d carries num_batches_tracked: it is ignored, not refused."""
    import torch

    from twincnn.spec import FLATTEN, Spec, batchnorm, conv, dense

    tb = tf_and_torch[1]
    spec = Spec((28, 28, 1), (conv(4, 3, 2, "same"), batchnorm(), FLATTEN, dense(10)))
    state = tb.build(spec, seed=0).state_dict()
    state["bn1.num_batches_tracked"] = torch.tensor(7)
    src = tmp_path / "stock.pt"
    torch.save(state, src)
    model, _ = tb.load_file(src, spec)
    assert torch.equal(model.bn1.running_var, state["bn1.running_var"])


def test_unsupported_activation_or_setting_names_the_layer(tf_and_torch):
    from twincnn.backends import tensorflow_read

    keras = tf_and_torch[0].keras
    for layer, message in [(keras.layers.Conv2D(2, 3, activation="softplus"), "activation 'softplus'"),
                           (keras.layers.BatchNormalization(center=False), "center=False"),
                           (keras.layers.ELU(alpha=0.5), "ELU alpha 0.5")]:
        first = [keras.layers.Conv2D(2, 3)] if isinstance(layer, (keras.layers.BatchNormalization,
                                                                   keras.layers.ELU)) else []
        model = keras.Sequential([keras.Input((8, 8, 1)), *first, layer, keras.layers.Flatten(),
                                  keras.layers.Dense(10)])
        with pytest.raises(UserError, match=message) as err:
            tensorflow_read.read_model(model)
        assert "\n" not in str(err.value) and layer.name in str(err.value)
