"""The spec's arithmetic, checked by hand for the notebook's CNN, and its validation errors."""

import pytest

from twincnn.spec import DEFAULT_SPEC, FLATTEN, LayerInfo, Spec, SpecError, conv, dense, pool, same_padding


def test_notebook_shapes_and_params_by_hand():
    shapes = [i.output_shape for i in DEFAULT_SPEC.info]
    assert shapes == [(26, 26, 28), (13, 13, 28), (11, 11, 64), (5, 5, 64), (3, 3, 64), (576,), (64,), (10,)]
    assert [i.params for i in DEFAULT_SPEC.param_layers] == [280, 16_192, 36_928, 36_928, 650]
    assert DEFAULT_SPEC.total_params == 90_978
    assert [i.name for i in DEFAULT_SPEC.param_layers] == ["conv1", "conv2", "conv3", "fc1", "fc2"]


def test_forward_flops_of_notebook_cnn():
    # 26*26*28*9 + 11*11*64*252 + 3*3*64*576 + 576*64 + 64*10 multiply-adds, times 2
    assert DEFAULT_SPEC.forward_flops() == 2 * (26 * 26 * 28 * 9 + 11 * 11 * 64 * 252 + 9 * 64 * 576 + 576 * 64 + 640)


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (28, 3, 1, (1, 1)), (28, 2, 1, (0, 1)), (28, 3, 2, (0, 1)), (27, 3, 2, (1, 1)), (5, 4, 2, (1, 2)),
])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_same_padding_stride_two_shape():
    spec = Spec((28, 28, 1), (conv(4, 3, 2, "same"), FLATTEN, dense(10)))
    assert spec.info[0].output_shape == (14, 14, 4)
    assert spec.info[0].padding == ((0, 1), (0, 1))


def test_round_trip_through_dict():
    assert Spec.from_dict(DEFAULT_SPEC.to_dict()) == DEFAULT_SPEC


@pytest.mark.parametrize("layers,message", [
    ((conv(8, 5), pool(), conv(8, 5), pool(), conv(8, 5), FLATTEN, dense(10)), "layer 4 (conv2d)"),
    ((conv(0), FLATTEN, dense(10)), "layer 0 (conv2d): filters must be a positive int"),
    ((conv(-3), FLATTEN, dense(10)), "filters must be a positive int"),
    ((conv(8), dense(10)), "layer 1 (dense): Dense needs a flat input"),
    ((conv(8), FLATTEN, conv(8), dense(10)), "layer 2 (conv2d): needs an image input"),
    ((pool(30), FLATTEN, dense(10)), "layer 0 (maxpool2d): pool (30, 30) does not fit"),
    ((conv(8, padding="full"), FLATTEN, dense(10)), "padding must be 'valid', 'same', an int >= 0"),
    ((conv(8, activation="softmax"), FLATTEN, dense(10)), "activation must be one of relu, "),
    ((conv(8), FLATTEN, dense(10, "relu")), "without activation"),
    ((conv(8),), "must give class scores"),
    (({"type": "lstm"},), "layer 0: unknown type 'lstm'"),
    (({"type": "dense", "units": 10, "dropout": 0.5},), "unknown setting"),
    ((), "at least one layer"),
])
def test_invalid_specs_name_the_layer(layers, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Spec((28, 28, 1), layers)


def test_spec_error_is_a_value_error():
    with pytest.raises(ValueError):
        Spec((28, 28, 1), (conv(0),))


def test_load_bad_spec_files(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        Spec.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="not a JSON spec"):
        Spec.load(bad)


# -- one network, however it is written ---------------------------------------------------------
def test_specs_of_the_same_network_are_equal():
    short = Spec((28, 28, 1), ({"type": "conv2d", "filters": 8, "kernel_size": 3, "activation": "relu"},
                               {"type": "maxpool2d"}, FLATTEN, {"type": "dense", "units": 10}))
    spelled_out = Spec([28, 28, 1], [
        {"type": "conv2d", "filters": 8, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid",
         "activation": "relu"},
        {"type": "maxpool2d", "pool_size": [2, 2], "strides": [2, 2]},
        {"type": "flatten"}, {"type": "dense", "units": 10, "use_bias": True, "activation": None}])
    assert short == spelled_out and hash(short) == hash(spelled_out)
    assert short != Spec((28, 28, 1), (conv(8, 3, activation=None), pool(), FLATTEN, dense(10)))  # no ReLU
    assert short != Spec((28, 28, 1), (conv(8, 3), pool(2, 1), FLATTEN, dense(10)))  # pool stride 1
    assert short != Spec((28, 28, 2), (conv(8, 3), pool(), FLATTEN, dense(10)))  # two channels
    assert short != "not a spec"


@pytest.mark.parametrize("change", [
    {"filters": 9}, {"kernel_size": [3, 2]}, {"strides": 2}, {"padding": "same"}, {"activation": None}])
def test_each_conv_setting_makes_a_different_spec(change):
    base = {"type": "conv2d", "filters": 8, "kernel_size": 3, "strides": 1, "padding": "valid", "activation": "relu"}
    a = Spec((28, 28, 1), (base, FLATTEN, dense(10)))
    b = Spec((28, 28, 1), ({**base, **change}, FLATTEN, dense(10)))
    assert a != b, change


@pytest.mark.parametrize("layers", [
    (conv(8), pool(2), FLATTEN, dense(10)),
    (conv(8), pool(3, 2), FLATTEN, dense(12, "relu"), dense(10)),
])
def test_different_dense_or_pool_settings_differ(layers):
    a = Spec((28, 28, 1), layers)
    changed = tuple({**layer, "units": layer["units"] + 1} if layer["type"] == "dense" else layer
                    for layer in layers)
    assert a != Spec((28, 28, 1), changed)
    repooled = tuple({**layer, "pool_size": 4} if layer["type"] == "maxpool2d" else layer for layer in layers)
    assert a != Spec((28, 28, 1), repooled)


# -- malformed specs are one-line errors naming the layer or field -----------------------------------
@pytest.mark.parametrize("doc,message", [
    ({"input_shape": [28, 28, 1], "layers": [{"type": "flatten"}, "dense"]}, "layer 1: must be an object"),
    ({"input_shape": [28, 28, 1], "layers": [["conv2d", 8]]}, "layer 0: must be an object"),
    ({"input_shape": [28, 28, 1], "layers": [None]}, "layer 0: must be an object"),
    ({"input_shape": 28, "layers": [FLATTEN, dense(10)]}, "input_shape must be a list"),
    ({"input_shape": "28x28", "layers": [FLATTEN, dense(10)]}, "input_shape must be a list"),
    ({"input_shape": [28, 28, True], "layers": [FLATTEN, dense(10)]}, "three positive ints"),
    ({"input_shape": [28, 28, 1], "layers": "conv2d"}, "layers must be a list"),
    ({"input_shape": [28, 28, 1], "layers": {"type": "dense"}}, "layers must be a list"),
])
def test_malformed_spec_is_one_spec_error(tmp_path, doc, message):
    import json

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as err:
        Spec.load(path)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("strides,message", [(0, "strides must be positive"), ([2, 0], "strides must be positive"),
                                             (-1, "strides must be positive"), ("2", "int or a pair")])
def test_pool_strides_are_validated(strides, message):
    with pytest.raises(SpecError, match=message) as err:
        Spec((28, 28, 1), (pool(2, strides), FLATTEN, dense(10)))
    assert "layer 0 (maxpool2d)" in str(err.value)


def test_pool_strides_default_to_the_pool_size():
    assert Spec((28, 28, 1), (pool(3), FLATTEN, dense(10))).info[0].config["strides"] == (3, 3)
    assert Spec((28, 28, 1), (pool(3, 1), FLATTEN, dense(10))).info[0].output_shape == (26, 26, 1)


# -- every derived field, worked out by hand for a spec where height and width differ everywhere ---------
def test_every_layer_field_by_hand():
    """Input 10x12x2; no kernel, stride or pool is square, so a height/width mix-up changes some number.

    conv1 'same', kernel 3x4, strides 2x1: pad height (0, 1) (total (5-1)*2+3-10 = 1, the odd pixel after),
    width (1, 2) (total 11+4-12 = 3); output (10+1-3)//2+1 = 5 by (12+3-4)//1+1 = 12.
    pool1 2x1, strides 2x4: (5-2)//2+1 = 2 by (12-1)//4+1 = 3. conv2 'valid' 2x3 fits 2x3 exactly: 1x1.
    """
    spec = Spec((10, 12, 2), (conv(3, (3, 4), (2, 1), "same"), pool((2, 1), (2, 4)),
                              conv(4, (2, 3), 1, "valid", None), FLATTEN, dense(5, "relu"), dense(10)))
    conv_cfg = {"type": "conv2d", "filters": 3, "kernel_size": (3, 4), "strides": (2, 1), "padding": "same",
                "dilation_rate": (1, 1), "groups": 1, "use_bias": True, "activation": "relu"}
    conv2_cfg = {"type": "conv2d", "filters": 4, "kernel_size": (2, 3), "strides": (1, 1), "padding": "valid",
                 "dilation_rate": (1, 1), "groups": 1, "use_bias": True, "activation": None}
    expected = [
        LayerInfo(0, "conv2d", "conv1", conv_cfg, (10, 12, 2), (5, 12, 3), 3 * 4 * 2 * 3 + 3,
                  {"kernel": (3, 4, 2, 3), "bias": (3,)}, ((0, 1), (1, 2)), None, ("input",), ((10, 12, 2),)),
        LayerInfo(1, "maxpool2d", "pool1", {"type": "maxpool2d", "pool_size": (2, 1), "strides": (2, 4),
                                            "padding": "valid"}, (5, 12, 3), (2, 3, 3), 0, {}, ((0, 0), (0, 0)), None,
                  ("conv1",), ((5, 12, 3),)),
        LayerInfo(2, "conv2d", "conv2", conv2_cfg, (2, 3, 3), (1, 1, 4), 2 * 3 * 3 * 4 + 4,
                  {"kernel": (2, 3, 3, 4), "bias": (4,)}, ((0, 0), (0, 0)), None, ("pool1",), ((2, 3, 3),)),
        LayerInfo(3, "flatten", "flatten", {"type": "flatten"}, (1, 1, 4), (4,), 0, {}, None, None, ("conv2",),
                  ((1, 1, 4),)),
        LayerInfo(4, "dense", "fc1", {"type": "dense", "units": 5, "use_bias": True, "activation": "relu"}, (4,), (5,), 25,
                  {"kernel": (4, 5), "bias": (5,)}, None, (1, 1, 4), ("flatten",), ((4,),)),
        LayerInfo(5, "dense", "fc2", {"type": "dense", "units": 10, "use_bias": True, "activation": None}, (5,), (10,), 60,
                  {"kernel": (5, 10), "bias": (10,)}, None, None, ("fc1",), ((5,),)),
    ]
    for got, want in zip(spec.info, expected, strict=True):
        assert got == want, f"\n got: {got}\nwant: {want}"
    assert spec.total_params == 75 + 76 + 25 + 60 and spec.num_classes == 10 and spec.output_shape == (10,)
    assert [i.name for i in spec.param_layers] == ["conv1", "conv2", "fc1", "fc2"]
    assert spec.info[4].activation == "relu" and spec.info[1].activation is None
    assert spec.describe() == (
        "input(10, 12, 2) -> conv1(filters=3, kernel_size=(3, 4), strides=(2, 1), padding=same, activation=relu)"
        " -> pool1(pool_size=(2, 1), strides=(2, 4), padding=valid) -> conv2(filters=4, kernel_size=(2, 3), strides=(1, 1), "
        "padding=valid, activation=None) -> flatten() -> fc1(units=5, activation=relu) -> fc2(units=10, "
        "activation=None)")


def test_weight_shapes_of_the_notebook_cnn():
    assert DEFAULT_SPEC.weight_shapes() == {
        "conv1/kernel": (3, 3, 1, 28), "conv1/bias": (28,), "conv2/kernel": (3, 3, 28, 64), "conv2/bias": (64,),
        "conv3/kernel": (3, 3, 64, 64), "conv3/bias": (64,), "fc1/kernel": (576, 64), "fc1/bias": (64,),
        "fc2/kernel": (64, 10), "fc2/bias": (10,)}
    assert DEFAULT_SPEC.info[6].flatten_from == (3, 3, 64)


def test_layer_defaults():
    spec = Spec((6, 7, 1), ({"type": "conv2d", "filters": 2}, {"type": "maxpool2d"}, FLATTEN,
                            {"type": "dense", "units": 10}))
    assert spec.info[0].config == {"type": "conv2d", "filters": 2, "kernel_size": (3, 3), "strides": (1, 1),
                                   "padding": "valid", "dilation_rate": (1, 1), "groups": 1, "use_bias": True, "activation": None}
    assert spec.info[0].output_shape == (4, 5, 2)
    assert spec.info[1].config == {"type": "maxpool2d", "pool_size": (2, 2), "strides": (2, 2), "padding": "valid"}
    assert spec.info[1].output_shape == (2, 2, 2)


def test_layer_helpers_spell_out_the_defaults():
    assert conv(8) == {"type": "conv2d", "filters": 8, "kernel_size": 3, "strides": 1, "padding": "valid",
                       "activation": "relu"}
    assert pool() == {"type": "maxpool2d", "pool_size": 2, "strides": None}
    assert dense(10) == {"type": "dense", "units": 10, "activation": None}


@pytest.mark.parametrize("layers,input_shape,output", [
    ((conv(1, (4, 10)), FLATTEN, dense(1)), (4, 10, 1), (1, 1, 1)),        # kernel exactly the input size
    ((pool((4, 10)), FLATTEN, dense(1)), (4, 10, 1), (1, 1, 1)),           # pool exactly the input size
    ((conv(2, 5, padding="same"), FLATTEN, dense(1)), (3, 3, 1), (3, 3, 2)),  # 'same' pads a large kernel
])
def test_smallest_inputs_that_fit(layers, input_shape, output):
    assert Spec(input_shape, layers).info[0].output_shape == output


def test_same_padding_of_a_large_kernel():
    assert Spec((3, 3, 1), (conv(2, 5, padding="same"), FLATTEN, dense(1))).info[0].padding == ((2, 2), (2, 2))


@pytest.mark.parametrize("size,kernel,stride", [(28, 1, 1), (28, 1, 2), (8, 1, 4)])
def test_same_padding_never_negative(size, kernel, stride):
    assert same_padding(size, kernel, stride) == (0, 0)


# -- each validation error, word for word ----------------------------------------------------------
ERRORS = [
    ((0, 28, 1), (FLATTEN, dense(10)), "input_shape must be three positive ints (H, W, C), got (0, 28, 1)"),
    ((28, 28), (FLATTEN, dense(10)), "input_shape must be three positive ints (H, W, C), got (28, 28)"),
    ((28, 28, 1), (), "a spec needs at least one layer"),
    ((28, 28, 1), ({"type": "lstm"},), "layer 0: unknown type 'lstm'; supported: conv2d, depthwiseconv2d, maxpool2d, "
                                       "avgpool2d, globalavgpool2d, flatten, dense, batchnorm, dropout, layernorm, activation, "
                                       "zeropad2d, add, concatenate"),
    ((28, 28, 1), ({"type": "dense", "units": 10, "dropout": 0.5},),
     "layer 0 (dense): unknown setting(s) ['dropout']; allowed: ['activation', 'inputs', 'units', 'use_bias']"),
    ((28, 28, 1), (conv(8, activation="softmax"), FLATTEN, dense(10)),
     "layer 0 (conv2d): activation must be one of relu, relu6, sigmoid, tanh, elu, silu, gelu, gelu_tanh, leaky_relu or null, "
     "got 'softmax'"),
    ((28, 28, 1), ({"type": "maxpool2d", "activation": "relu"}, FLATTEN, dense(10)),
     "layer 0 (maxpool2d): takes no activation, got 'relu'"),
    ((28, 28, 1), (conv(8), {"type": "flatten", "activation": "relu"}, dense(10)),
     "layer 1 (flatten): takes no activation, got 'relu'"),
    ((28, 28, 1), (conv(8), FLATTEN, conv(8), dense(10)),
     "layer 2 (conv2d): needs an image input (H, W, C), got (5408,) after Flatten"),
    ((28, 28, 1), (conv(8), FLATTEN, pool(), dense(10)),
     "layer 2 (maxpool2d): needs an image input (H, W, C), got (5408,) after Flatten"),
    ((28, 28, 1), (conv("8"), FLATTEN, dense(10)), "layer 0 (conv2d): filters must be a positive int, got '8'"),
    ((28, 28, 1), (conv(True), FLATTEN, dense(10)), "layer 0 (conv2d): filters must be a positive int, got True"),
    ((28, 28, 1), (conv(8, [3, "3"]), FLATTEN, dense(10)),
     "layer 0 (conv2d): kernel_size must be an int or a pair of ints, got [3, '3']"),
    ((28, 28, 1), (conv(8, 3.0), FLATTEN, dense(10)),
     "layer 0 (conv2d): kernel_size must be an int or a pair of ints, got 3.0"),
    ((28, 28, 1), (conv(8, [3, 3, 3]), FLATTEN, dense(10)),
     "layer 0 (conv2d): kernel_size must be an int or a pair of ints, got [3, 3, 3]"),
    ((28, 28, 1), (conv(8, [True, 3]), FLATTEN, dense(10)),
     "layer 0 (conv2d): kernel_size must be an int or a pair of ints, got [True, 3]"),
    ((28, 28, 1), (conv(8, 0), FLATTEN, dense(10)), "layer 0 (conv2d): kernel_size must be positive, got (0, 0)"),
    ((28, 28, 1), (conv(8, 3, [1, 0]), FLATTEN, dense(10)), "layer 0 (conv2d): strides must be positive, got [1, 0]"),
    ((28, 28, 1), (conv(8, 3, "1"), FLATTEN, dense(10)),
     "layer 0 (conv2d): strides must be an int or a pair of ints, got '1'"),
    ((28, 28, 1), (pool([2, 0]), FLATTEN, dense(10)), "layer 0 (maxpool2d): pool_size must be positive, got [2, 0]"),
    ((28, 28, 1), (conv(8, padding="full"), FLATTEN, dense(10)),
     "layer 0 (conv2d): padding must be 'valid', 'same', an int >= 0 or [[top, bottom], [left, right]], got 'full'"),
    ((4, 10, 1), (conv(8, [5, 1]), FLATTEN, dense(10)),
     "layer 0 (conv2d): kernel (5, 1) does not fit input 4x10: output would be empty"),
    ((4, 10, 1), (conv(8, [1, 11]), FLATTEN, dense(10)),
     "layer 0 (conv2d): kernel (1, 11) does not fit input 4x10: output would be empty"),
    ((4, 10, 1), (pool([5, 1]), FLATTEN, dense(10)),
     "layer 0 (maxpool2d): pool (5, 1) does not fit input 4x10: output would be empty"),
    ((4, 10, 1), (pool([1, 11]), FLATTEN, dense(10)),
     "layer 0 (maxpool2d): pool (1, 11) does not fit input 4x10: output would be empty"),
    ((28, 28, 1), (conv(8), FLATTEN, FLATTEN, dense(10)), "layer 2 (flatten): input is already flat"),
    ((28, 28, 1), (conv(8), FLATTEN, dense("10")), "layer 2 (dense): units must be a positive int, got '10'"),
    ((28, 28, 1), (conv(8), FLATTEN, dense(True)), "layer 2 (dense): units must be a positive int, got True"),
    ((28, 28, 1), (conv(8), FLATTEN, dense(0)), "layer 2 (dense): units must be a positive int, got 0"),
    ((28, 28, 1), (conv(8), dense(10)),
     "layer 1 (dense): Dense needs a flat input, got (26, 26, 8); add a flatten layer before it"),
    ((28, 28, 1), (conv(8),),
     "the last layer must give class scores (units,), got (26, 26, 8); end with flatten + dense"),
    ((28, 28, 1), (conv(8), FLATTEN, dense(10, "relu")),
     "the last layer must be a dense layer without activation (it outputs logits)"),
]


@pytest.mark.parametrize("input_shape,layers,message", ERRORS, ids=[m[:40] for *_, m in ERRORS])
def test_error_message_word_for_word(input_shape, layers, message):
    with pytest.raises(SpecError) as err:
        Spec(input_shape, layers)
    assert str(err.value) == message


@pytest.mark.parametrize("layers", [(conv(1), FLATTEN, dense(10)), (conv(8), FLATTEN, dense(1))])
def test_one_filter_or_one_unit_is_enough(layers):
    Spec((28, 28, 1), layers)


# -- plain data in and out ---------------------------------------------------------------------------
def test_to_dict_is_the_raw_spec():
    spec = Spec((8, 8, 1), [conv(2), FLATTEN, dense(10)])
    assert spec.to_dict() == {"input_shape": [8, 8, 1], "layers": [conv(2), FLATTEN, dense(10)]}


def test_layers_are_copied_into_a_tuple():
    layer = conv(2)
    spec = Spec([8, 8, 1], [layer, FLATTEN, dense(10)])
    layer["filters"] = 99  # the caller's dict changes later: the spec must not
    assert isinstance(spec.layers, tuple) and spec.layers[0]["filters"] == 2
    assert spec.input_shape == (8, 8, 1)


def test_from_dict_without_an_input_shape_takes_the_datas_or_is_refused(tmp_path):
    assert Spec.from_dict({"layers": [FLATTEN, dense(3)]}, (5, 6, 2)).input_shape == (5, 6, 2)
    assert Spec.from_dict({"input_shape": [4, 4, 1], "layers": [FLATTEN, dense(3)]}, (5, 6, 2)).input_shape == (4, 4, 1)
    with pytest.raises(SpecError, match=r'^the spec names no input_shape; add "input_shape": \[H, W, C\]$'):
        Spec.from_dict({"layers": [FLATTEN, dense(10)]})
    path = tmp_path / "s.json"
    path.write_text('{"layers": [{"type": "flatten"}, {"type": "dense", "units": 2}]}')
    assert Spec.load(path, (3, 3, 3)).input_shape == (3, 3, 3)
    with pytest.raises(SpecError, match="s.json: the spec names no input_shape"):
        Spec.load(path)


@pytest.mark.parametrize("data", [{"input_shape": [28, 28, 1]}, [FLATTEN, dense(10)], "spec"])
def test_from_dict_needs_an_object_with_layers(data):
    with pytest.raises(SpecError) as err:
        Spec.from_dict(data)
    assert str(err.value) == "a spec is a JSON object with 'input_shape' and 'layers'"


def test_different_specs_hash_differently():
    a = Spec((8, 8, 1), (conv(2), FLATTEN, dense(10)))
    b = Spec((8, 8, 1), (conv(3), FLATTEN, dense(10)))
    assert hash(a) != hash(b) and len({a, b, Spec((8, 8, 1), (conv(2, [3, 3]), FLATTEN, dense(10)))}) == 2


def test_load_spec(tmp_path):
    import json

    from twincnn.zoo import load_spec

    assert load_spec() is DEFAULT_SPEC
    small = Spec((8, 8, 1), (conv(2), FLATTEN, dense(10)))
    path = tmp_path / "s.json"
    path.write_text(json.dumps(small.to_dict()))
    assert load_spec(path) == small and load_spec(str(path)) == small


def test_the_default_cnn_is_built_for_any_image_and_class_count():
    from twincnn.spec import DEFAULT_MIN_SIZE, default_spec_for

    spec = default_spec_for((32, 40, 3), 7)
    assert spec.input_shape == (32, 40, 3) and spec.num_classes == 7
    assert [i.type for i in spec.info] == [i.type for i in DEFAULT_SPEC.info]
    assert spec.layers[:-1] == DEFAULT_SPEC.layers[:-1] and spec.info[0].weight_shapes["kernel"] == (3, 3, 3, 28)
    assert default_spec_for(DEFAULT_MIN_SIZE + (1,), 2).info[4].output_shape == (1, 1, 64)  # the smallest fits


@pytest.mark.parametrize("size", [(17, 18), (18, 17), (5, 40)])
def test_images_smaller_than_the_default_cnn_takes_are_refused_naming_the_size(size):
    from twincnn.spec import default_spec_for

    with pytest.raises(SpecError) as err:
        default_spec_for((*size, 3), 4)
    assert str(err.value) == (f"images of {size[0]}x{size[1]} are too small for the default CNN (it takes at least "
                              f"18x18); give a network that fits them with --spec or --model")
