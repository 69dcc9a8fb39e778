"""The spec's arithmetic for the zoo's layer types, worked out by hand, their one-line errors, and the zoo."""

import json

import pytest

from twincnn.spec import (FLATTEN, GLOBAL_AVG_POOL, Spec, SpecError, avgpool, batchnorm, conv, dense, depthwise,
                          dropout, layernorm, pool)
from twincnn.weights import initial_weights
from twincnn.zoo import load_spec

LAYER_TYPES = ("conv2d", "depthwiseconv2d", "maxpool2d", "avgpool2d", "globalavgpool2d", "flatten", "dense",
               "batchnorm", "dropout", "layernorm")


def test_new_types_by_hand():
    """Input 9x11x4. conv1: 3x3 dilated 2 (extent 5), 'same', groups 2: pad (2, 2) both ways, 9x11x6, kernel
    (3, 3, 4/2, 6). avgpool1 3x3 stride 2 'same': ceil(9/2) = 5 by 6, pad (1, 1), (1, 1). pool1 2x2 'same' on 5x6:
    3x3, pad (0, 1), (0, 0). dw1 2x2 multiplier 3 'same' on 3x3: pad (0, 1), (0, 1), 18 channels."""
    spec = Spec((9, 11, 4), (
        {**conv(6, 3, 1, "same", "elu"), "dilation_rate": 2, "groups": 2}, avgpool(3, 2, "same"),
        {**pool(2), "padding": "same"}, depthwise(2, 3, 1, "same", "silu"), batchnorm(0.9, 1e-2), layernorm(),
        dropout(0.5), FLATTEN, batchnorm(), layernorm(1e-5), dropout(0.1), {**dense(7, "leaky_relu")}, dense(10)))
    rows = [(i.name, i.output_shape, i.padding, i.weight_shapes, i.params, i.flatten_from) for i in spec.info]
    assert rows == [
        ("conv1", (9, 11, 6), ((2, 2), (2, 2)), {"kernel": (3, 3, 2, 6), "bias": (6,)}, 114, None),
        ("avgpool1", (5, 6, 6), ((1, 1), (1, 1)), {}, 0, None),
        ("pool1", (3, 3, 6), ((0, 1), (0, 0)), {}, 0, None),
        ("dw1", (3, 3, 18), ((0, 1), (0, 1)), {"kernel": (2, 2, 6, 3), "bias": (18,)}, 90, None),
        ("bn1", (3, 3, 18), None, dict.fromkeys(("gamma", "beta", "moving_mean", "moving_variance"), (18,)), 72, None),
        ("ln1", (3, 3, 18), None, {"gamma": (18,), "beta": (18,)}, 36, None),
        ("drop1", (3, 3, 18), None, {}, 0, None),
        ("flatten", (162,), None, {}, 0, None),
        ("bn2", (162,), None, dict.fromkeys(("gamma", "beta", "moving_mean", "moving_variance"), (162,)), 648,
         (3, 3, 18)),
        ("ln2", (162,), None, {"gamma": (162,), "beta": (162,)}, 324, (3, 3, 18)),
        ("drop2", (162,), None, {}, 0, None),
        ("fc1", (7,), None, {"kernel": (162, 7), "bias": (7,)}, 1141, (3, 3, 18)),
        ("fc2", (10,), None, {"kernel": (7, 10), "bias": (10,)}, 80, None),
    ]
    assert spec.info[0].config == {"type": "conv2d", "filters": 6, "kernel_size": (3, 3), "strides": (1, 1),
                                   "padding": "same", "dilation_rate": (2, 2), "groups": 2, "use_bias": True,
                                   "activation": "elu"}
    assert spec.info[11].config == {"type": "dense", "units": 7, "use_bias": True, "activation": "leaky_relu",
                                    "negative_slope": 0.3}
    assert spec.info[4].config == {"type": "batchnorm", "momentum": 0.9, "epsilon": 0.01}
    assert spec.info[9].config == {"type": "layernorm", "axis": -1, "epsilon": 1e-5}
    assert "bn1/moving_mean" in spec.weight_shapes() and "bn1/moving_mean" not in spec.trainable_weight_shapes()
    assert list(spec.trainable_weight_shapes()) == [k for k in spec.weight_shapes() if "moving" not in k]
    # conv: 2 * 9*11*6 outputs * 3*3*2 inputs each; depthwise: 2 * 3*3*18 outputs * 2*2
    assert spec.layer_flops()[:4] == [2 * 9 * 11 * 6 * 9 * 2, 0, 0, 2 * 3 * 3 * 18 * 4]


def test_gap_flattens_to_channels_and_dense_follows():
    spec = Spec((8, 8, 1), (conv(5, 3), GLOBAL_AVG_POOL, dropout(0.2), dense(10)))
    assert [i.name for i in spec.info] == ["conv1", "gap1", "drop1", "fc1"]
    assert spec.info[1].output_shape == (5,) and spec.info[3].flatten_from is None


def test_defaults_and_equal_spellings():
    short = Spec((8, 8, 1), ({"type": "batchnorm"}, {"type": "layernorm"}, {"type": "avgpool2d"},
                             {"type": "depthwiseconv2d"}, FLATTEN, {"type": "dropout", "rate": 0}, dense(10)))
    spelled = Spec((8, 8, 1), (batchnorm(0.99, 0.001), layernorm(0.001), avgpool(2, 2, "valid"),
                               depthwise(3, 1, 1, "valid", None), FLATTEN, dropout(0.0), dense(10)))
    assert short == spelled and hash(short) == hash(spelled)
    assert short != Spec((8, 8, 1), (batchnorm(0.9), layernorm(), avgpool(), depthwise(), FLATTEN, dropout(0),
                                     dense(10)))
    leaky = Spec((8, 8, 1), (conv(2, activation="leaky_relu"), FLATTEN, dense(10)))
    assert leaky == Spec((8, 8, 1), ({**conv(2, activation="leaky_relu"), "negative_slope": 0.3}, FLATTEN, dense(10)))
    assert leaky != Spec((8, 8, 1), ({**conv(2, activation="leaky_relu"), "negative_slope": 0.2}, FLATTEN, dense(10)))
    dilated = Spec((8, 8, 1), ({**conv(2), "dilation_rate": 1, "groups": 1}, FLATTEN, dense(10)))
    assert dilated == Spec((8, 8, 1), (conv(2), FLATTEN, dense(10)))
    assert dilated.describe() == Spec((8, 8, 1), (conv(2), FLATTEN, dense(10))).describe()


@pytest.mark.parametrize("change", [{"momentum": 0.9}, {"epsilon": 1e-5}])
def test_each_batchnorm_setting_makes_a_different_spec(change):
    assert Spec((4, 4, 1), (batchnorm(), FLATTEN, dense(10))) != Spec((4, 4, 1), ({**batchnorm(), **change}, FLATTEN,
                                                                                dense(10)))


def test_initial_weights_of_the_normalisation_layers():
    spec = Spec((6, 6, 2), (depthwise(3, 2), batchnorm(), layernorm(), FLATTEN, dense(10)))
    w = initial_weights(spec, 0)
    assert (w["bn1/gamma"] == 1).all() and (w["bn1/beta"] == 0).all()
    assert (w["bn1/moving_mean"] == 0).all() and (w["bn1/moving_variance"] == 1).all()
    assert (w["ln1/gamma"] == 1).all() and (w["ln1/beta"] == 0).all()
    limit = (6 / (2 * 9 + 2 * 9)) ** 0.5  # Keras's fans for a (3, 3, 2, 2) depthwise kernel
    assert 0.8 * limit < abs(w["dw1/kernel"]).max() <= limit


# -- bad configurations: one line that names the layer --------------------------------------------------
ERRORS = [
    ((conv(4), {"type": "batchnorm", "momentum": 1.0}, FLATTEN, dense(10)),
     "layer 1 (batchnorm): momentum must be a number in [0, 1), got 1.0"),
    ((conv(4), {"type": "batchnorm", "epsilon": 0}, FLATTEN, dense(10)),
     "layer 1 (batchnorm): epsilon must be a positive number, got 0"),
    ((conv(4), {"type": "batchnorm", "momentum": "0.9"}, FLATTEN, dense(10)),
     "layer 1 (batchnorm): momentum must be a number in [0, 1), got '0.9'"),
    ((conv(4), {"type": "dropout"}, FLATTEN, dense(10)), "layer 1 (dropout): needs a rate in [0, 1), e.g. \"rate\": 0.5"),
    ((conv(4), dropout(1), FLATTEN, dense(10)), "layer 1 (dropout): rate must be a number in [0, 1), got 1"),
    ((conv(4), dropout(True), FLATTEN, dense(10)), "layer 1 (dropout): rate must be a number in [0, 1), got True"),
    ((conv(4), {"type": "layernorm", "axis": 1}, FLATTEN, dense(10)),
     "layer 1 (layernorm): axis must be -1 (the channel axis, or the features of a flat input), got 1"),
    ((conv(4), {"type": "layernorm", "epsilon": float("nan")}, FLATTEN, dense(10)),
     "layer 1 (layernorm): epsilon must be a positive number, got nan"),
    (({**conv(4, strides=2), "dilation_rate": 2}, FLATTEN, dense(10)),
     "layer 0 (conv2d): dilation_rate (2, 2) with strides (2, 2): Keras allows dilation only with strides 1; "
     "use one or the other"),
    (({**conv(4), "dilation_rate": 0}, FLATTEN, dense(10)), "layer 0 (conv2d): dilation_rate must be positive, got (0, 0)"),
    (({**conv(4), "groups": 3}, FLATTEN, dense(10)),
     "layer 0 (conv2d): groups=3 must divide the input channels (2) and filters (4)"),
    (({**conv(3), "groups": 2}, FLATTEN, dense(10)),
     "layer 0 (conv2d): groups=2 must divide the input channels (2) and filters (3)"),
    (({**conv(4), "groups": 0}, FLATTEN, dense(10)), "layer 0 (conv2d): groups must be a positive int, got 0"),
    (({**conv(4, 5), "dilation_rate": 3}, FLATTEN, dense(10)),
     "layer 0 (conv2d): dilated kernel (13, 13) does not fit input 12x12: output would be empty"),
    ((depthwise(3, 0), FLATTEN, dense(10)), "layer 0 (depthwiseconv2d): depth_multiplier must be a positive int, got 0"),
    ((depthwise(13), FLATTEN, dense(10)),
     "layer 0 (depthwiseconv2d): kernel (13, 13) does not fit input 12x12: output would be empty"),
    ((avgpool(2, 0), FLATTEN, dense(10)), "layer 0 (avgpool2d): strides must be positive, got (0, 0)"),
    ((pool(2, 0), FLATTEN, dense(10)), "layer 0 (maxpool2d): strides must be positive, got (0, 0)"),
    ((avgpool(2, padding="full"), FLATTEN, dense(10)),
     "layer 0 (avgpool2d): padding must be 'valid', 'same', an int >= 0 or [[top, bottom], [left, right]], got 'full'"),
    ((avgpool(13), FLATTEN, dense(10)), "layer 0 (avgpool2d): pool (13, 13) does not fit input 12x12: output would be empty"),
    ((conv(4), GLOBAL_AVG_POOL, conv(4), dense(10)),
     "layer 2 (conv2d): needs an image input (H, W, C), got (4,) after globalavgpool2d"),
    ((conv(4), GLOBAL_AVG_POOL, GLOBAL_AVG_POOL, dense(10)),
     "layer 2 (globalavgpool2d): needs an image input (H, W, C), got (4,) after globalavgpool2d"),
    ((conv(4), FLATTEN, avgpool(), dense(10)),
     "layer 2 (avgpool2d): needs an image input (H, W, C), got (400,) after Flatten"),
    ((conv(4), FLATTEN, depthwise(), dense(10)),
     "layer 2 (depthwiseconv2d): needs an image input (H, W, C), got (400,) after Flatten"),
    ((conv(4, activation="softmax"), FLATTEN, dense(10)),
     "layer 0 (conv2d): activation must be one of relu, relu6, sigmoid, tanh, elu, silu, gelu, gelu_tanh, leaky_relu or null, "
     "got 'softmax'"),
    (({**conv(4), "negative_slope": 0.1}, FLATTEN, dense(10)),
     "layer 0 (conv2d): negative_slope is allowed only with activation 'leaky_relu', got activation 'relu'"),
    (({**conv(4, activation="leaky_relu"), "negative_slope": -0.1}, FLATTEN, dense(10)),
     "layer 0 (conv2d): negative_slope must be a number >= 0, got -0.1"),
    (({**batchnorm(), "activation": "relu"}, FLATTEN, dense(10)), "layer 0 (batchnorm): takes no activation, got 'relu'"),
    (({**batchnorm(), "negative_slope": 0.1}, FLATTEN, dense(10)),
     "layer 0 (batchnorm): unknown setting(s) ['negative_slope']; allowed: ['activation', 'epsilon', 'inputs', 'momentum']"),
    (({**dropout(0.5), "seed": 1}, FLATTEN, dense(10)),
     "layer 0 (dropout): unknown setting(s) ['seed']; allowed: ['activation', 'inputs', 'rate']"),
    ((conv(4), FLATTEN, dense(10), batchnorm()),
     "the last layer must be a dense layer without activation (it outputs logits)"),
]


@pytest.mark.parametrize("layers,message", ERRORS, ids=[m[:50] for _, m in ERRORS])
def test_bad_config_is_one_line_naming_the_layer(layers, message):
    with pytest.raises(SpecError) as err:
        Spec((12, 12, 2), layers)
    assert str(err.value) == message and "\n" not in message


# -- the zoo ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lenet5", "vgg_block", "mobilenet_block", "gelu_layernorm"])
def test_zoo_specs_are_mnist_classifiers(name):
    spec = load_spec(f"zoo:{name}")
    assert spec.input_shape == (28, 28, 1) and spec.num_classes == 10


def test_zoo_specs_use_the_types_they_are_named_for():
    types = {name: {i.type for i in load_spec(f"zoo:{name}").info}
             for name in ("lenet5", "vgg_block", "mobilenet_block", "gelu_layernorm")}
    assert {"avgpool2d", "conv2d", "dense"} <= types["lenet5"]
    assert {"batchnorm", "maxpool2d", "dropout"} <= types["vgg_block"]
    assert {"depthwiseconv2d", "batchnorm", "globalavgpool2d"} <= types["mobilenet_block"]
    assert "layernorm" in types["gelu_layernorm"]
    activations = {i.activation for i in load_spec("zoo:gelu_layernorm").info}
    assert {"gelu", "gelu_tanh"} <= activations


def test_zoo_graphs_are_residual_networks():
    """resnet8: three stages, a projection (strided 1x1 conv) on the two that halve the image; mobilenetv2_block:
    ReLU6 and one residual add, where the shapes match."""
    resnet = load_spec("zoo:resnet8")
    adds = [i for i in resnet.info if i.type == "add"]
    assert [a.output_shape for a in adds] == [(28, 28, 8), (14, 14, 16), (7, 7, 32)]
    by_name = {i.name: i for i in resnet.info}
    projections = [by_name[n] for a in adds for n in a.inputs if by_name.get(n) and by_name[n].type == "batchnorm"
                   and by_name[by_name[n].inputs[0]].config.get("kernel_size") == (1, 1)]
    assert len(projections) == 2 and not resnet.is_sequential
    mobile = load_spec("zoo:mobilenetv2_block")
    assert "relu6" in {i.activation for i in mobile.info}
    assert [i.output_shape for i in mobile.info if i.type == "add"] == [(7, 7, 24)]


def test_unknown_zoo_name_lists_the_names():
    with pytest.raises(SpecError) as err:
        load_spec("zoo:resnet")
    assert str(err.value) == ("unknown zoo spec 'resnet'; choose from gelu_layernorm, lenet5, mobilenet_block, "
                              "mobilenetv2_block, resnet8, vgg_block")


def test_zoo_files_are_plain_spec_json():
    from importlib import resources

    for entry in resources.files("twincnn.zoo").iterdir():
        if entry.name.endswith(".json"):
            doc = json.loads(entry.read_text())
            assert set(doc) == {"description", "input_shape", "layers"}, entry.name
            assert Spec.from_dict(doc) == load_spec(f"zoo:{entry.name[:-5]}")


def test_neutral_file_accepts_a_spec_written_another_way():
    """The stored spec and --spec are compared as networks, not as texts."""
    from twincnn import weightsfile
    from twincnn.weights import initial_weights

    spelled = Spec((8, 8, 1), ({**conv(2, [3, 3], [1, 1]), "dilation_rate": 1}, {"type": "batchnorm"}, FLATTEN,
                               dense(10)))
    short = Spec((8, 8, 1), (conv(2), batchnorm(), FLATTEN, dense(10)))
    blob = weightsfile.to_bytes(spelled, initial_weights(spelled, 0))
    _, spec = weightsfile.from_bytes(blob, short)
    assert spec == short


# -- canonical: one spelling per network --------------------------------------------------------------
def test_canonical_spells_one_network_one_way():
    """'same', explicit padding and zero pads before a convolution are one network; an activation argument and
    an activation layer too. Chained zero pads fold into one; a pad a max-pool reads stays (its padding is -inf).
    Weighted layers keep their names, so canonical weights move between the spellings unchanged."""
    from twincnn.spec import activation, canonical, zeropad

    written = Spec((6, 4, 3), (zeropad([[1, 0], [0, 2]]), zeropad(1), conv(4, 3, 1, "valid"),
                               zeropad([[0, 1], [0, 0]]), zeropad(1), pool(2), FLATTEN, dense(10)))
    folded = Spec((6, 4, 3), ({**conv(4, 3, 1, [[2, 1], [1, 3]]), "activation": None}, activation("relu"),
                              zeropad([[1, 2], [1, 1]]), pool(2), FLATTEN, dense(10)))
    assert canonical(written) == canonical(folded) == folded
    assert canonical(canonical(written)) == canonical(written)
    assert canonical(written).weight_shapes() == written.weight_shapes()
    same = Spec((8, 8, 1), (conv(2, 3, 2, "same"), FLATTEN, dense(10)))
    explicit = Spec((8, 8, 1), (conv(2, 3, 2, [[0, 1], [0, 1]]), FLATTEN, dense(10)))
    symmetric = Spec((8, 8, 1), (conv(2, 3, 2, 1), FLATTEN, dense(10)))
    assert same != explicit and canonical(same) == canonical(explicit) != canonical(symmetric)
