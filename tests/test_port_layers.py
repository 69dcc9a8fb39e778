"""`twincnn port` with the zoo's layer types: a Keras model with BatchNorm after training (moving statistics
away from 0 and 1), Dropout, global average pooling and a 'same' stride-2 convolution -> .pt and back, and
-> the neutral .safetensors file (checked against the NumPy reference); Keras activations as the spec reads them."""

import json
import re

import numpy as np
import pytest

from tests.helpers import assert_close, assert_same_argmax
from twincnn.cli import main

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


def test_trained_batchnorm_model_to_torch_and_back(both, trained_bn_model, tmp_path, mnist, capsys):
    keras_model, path = trained_bn_model
    tfb, tb = both
    spec = tfb.spec_from_model(keras_model)
    assert [i.type for i in spec.info] == ["conv2d", "batchnorm", "conv2d", "batchnorm", "dropout",
                                           "globalavgpool2d", "dense", "dropout", "dense"]
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


def test_trained_batchnorm_model_to_safetensors_and_torch(both, trained_bn_model, tmp_path, capsys):
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


def test_stock_torch_batchnorm_state_dict_loads(both, tmp_path):
    """A state_dict from nn.BatchNorm2d carries num_batches_tracked: it is ignored, not refused."""
    import torch

    from twincnn.spec import FLATTEN, Spec, batchnorm, conv, dense

    tb = both[1]
    spec = Spec((28, 28, 1), (conv(4, 3, 2, "same"), batchnorm(), FLATTEN, dense(10)))
    state = tb.build(spec, seed=0).state_dict()
    state["bn1.num_batches_tracked"] = torch.tensor(7)
    src = tmp_path / "stock.pt"
    torch.save(state, src)
    model, _ = tb.load_file(src, spec)
    assert torch.equal(model.bn1.running_var, state["bn1.running_var"])


@pytest.mark.parametrize("given,expected", [
    ("relu", {"activation": "relu"}),
    ("gelu", {"activation": "gelu"}),  # keras.activations.gelu's default is the exact form
    ("leaky_relu", {"activation": "leaky_relu", "negative_slope": 0.2}),  # the function's default slope
    ("swish", {"activation": "silu"}),
    ("elu", {"activation": "elu"}),
    ("linear", {"activation": None}),
])
def test_activation_names_read_as_the_spec_says(both, given, expected):
    keras = both[0].keras
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation=given),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    layer = both[0].spec_from_model(model).info[0]
    assert {k: layer.config.get(k) for k in expected} == expected


def test_activation_layers_read_as_the_spec_says(both):
    """Objects as a layer's activation, and standalone activation layers folded into the layer before."""
    keras = both[0].keras
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(2, 3, activation=keras.layers.LeakyReLU()),  # the layer's default slope 0.3
        keras.layers.Conv2D(2, 3), keras.layers.ReLU(),
        keras.layers.DepthwiseConv2D(2), keras.layers.Activation("tanh"),
        keras.layers.Flatten(), keras.layers.Dense(4), keras.layers.ELU(),
        keras.layers.Dense(10)])
    spec = both[0].spec_from_model(model)
    assert [(i.activation, i.config.get("negative_slope")) for i in spec.info] == [
        ("leaky_relu", 0.3), ("relu", None), ("tanh", None), (None, None), ("elu", None), (None, None)]


def test_unsupported_activation_or_setting_names_the_layer(both):
    keras = both[0].keras
    for layer, message in [(keras.layers.Conv2D(2, 3, activation="softplus"), "activation 'softplus'"),
                           (keras.layers.BatchNormalization(center=False), "center=False"),
                           (keras.layers.ELU(alpha=0.5), "ELU alpha 0.5")]:
        first = [keras.layers.Conv2D(2, 3)] if isinstance(layer, (keras.layers.BatchNormalization,
                                                                   keras.layers.ELU)) else []
        model = keras.Sequential([keras.Input((8, 8, 1)), *first, layer, keras.layers.Flatten(),
                                  keras.layers.Dense(10)])
        with pytest.raises(ValueError, match=message) as err:
            both[0].spec_from_model(model)
        assert "\n" not in str(err.value) and layer.name in str(err.value)
