"""The spec's graphs (add, concatenate, layers reading named inputs) and padded pools' real cells, worked out
by hand and against brute force, with their one-line errors. Framework-free: the mutation run checks spec.py
with these tests."""

import numpy as np
import pytest

from twincnn.spec import (FLATTEN, GLOBAL_AVG_POOL, Spec, SpecError, activation, add, avgpool, concatenate, conv,
                          dense, depthwise, dropout, pool, real_cells)


def test_a_residual_block_and_a_channel_join_by_hand():
    """Input 8x8x3. conv1, conv2 3x3 'same' keep 8x8x4; add1 adds them; conv3 1x1 gives 8x8x6; concat1 joins
    add1's 4 channels and conv3's 6; pool1 halves to 4x4x10; 160 features."""
    spec = Spec((8, 8, 3), (conv(4, 3, 1, "same"), conv(4, 3, 1, "same"), add("conv1", "conv2"), conv(6, 1),
                            concatenate("add1", "conv3"), pool(), FLATTEN, dense(10)))
    rows = [(i.name, i.inputs, i.input_shapes, i.output_shape, i.params) for i in spec.info]
    assert rows == [
        ("conv1", ("input",), ((8, 8, 3),), (8, 8, 4), 112),
        ("conv2", ("conv1",), ((8, 8, 4),), (8, 8, 4), 148),
        ("add1", ("conv1", "conv2"), ((8, 8, 4), (8, 8, 4)), (8, 8, 4), 0),
        ("conv3", ("add1",), ((8, 8, 4),), (8, 8, 6), 30),
        ("concat1", ("add1", "conv3"), ((8, 8, 4), (8, 8, 6)), (8, 8, 10), 0),
        ("pool1", ("concat1",), ((8, 8, 10),), (4, 4, 10), 0),
        ("flatten", ("pool1",), ((4, 4, 10),), (160,), 0),
        ("fc1", ("flatten",), ((160,),), (10,), 1610),
    ]
    assert spec.info[2].input_shape == (8, 8, 4)  # a merge's input_shape is its first input's


def test_two_flattens_are_numbered_and_dense_layers_remember_where_their_features_came_from():
    spec = Spec((8, 8, 3), (conv(4), FLATTEN, {"type": "flatten", "inputs": "conv1"},  # a name alone: one input
                            {**dense(5), "inputs": ["flatten"]}, {**dense(5), "inputs": ["flatten2"]},
                            add("fc1", "fc2"), dense(10)))
    rows = [(i.name, i.inputs, i.flatten_from, i.output_shape) for i in spec.info]
    assert rows == [("conv1", ("input",), None, (6, 6, 4)), ("flatten", ("conv1",), None, (144,)),
                    ("flatten2", ("conv1",), None, (144,)), ("fc1", ("flatten",), (6, 6, 4), (5,)),
                    ("fc2", ("flatten2",), (6, 6, 4), (5,)), ("add1", ("fc1", "fc2"), None, (5,)),
                    ("fc3", ("add1",), None, (10,))]


@pytest.mark.parametrize("layers,message", [
    ((conv(4), {"type": "add", "inputs": 3}, FLATTEN, dense(10)),
     "layer 1 (add): inputs must be a list of earlier layers' names, got 3"),
    ((conv(4), {"type": "add", "inputs": ["conv1", 2]}, FLATTEN, dense(10)),
     "layer 1 (add): inputs must be a list of earlier layers' names, got ['conv1', 2]"),
    ((conv(4), {"type": "add", "inputs": ["conv1", "conv9"]}, FLATTEN, dense(10)),
     "layer 1 (add): input 'conv9' is not an earlier layer; earlier: input, conv1"),
    ((conv(4), {"type": "add", "inputs": ["conv1", "conv1"]}, FLATTEN, dense(10)),
     "layer 1 (add): inputs ['conv1', 'conv1'] name one layer twice"),
    ((conv(4), add("conv1"), FLATTEN, dense(10)), "layer 1 (add): reads two or more input(s), got ['conv1']"),
    ((conv(4), {"type": "add", "inputs": []}, FLATTEN, dense(10)), "layer 1 (add): reads two or more input(s), got []"),
    ((conv(4), conv(4), {**conv(4), "inputs": ["conv1", "conv2"]}, FLATTEN, dense(10)),
     "layer 2 (conv2d): reads one input(s), got ['conv1', 'conv2']"),
    ((conv(4), conv(5, 1), add("conv1", "conv2"), FLATTEN, dense(10)),
     "layer 2 (add): add needs inputs of one shape, got conv1 (6, 6, 4), conv2 (6, 6, 5)"),
    ((conv(4), FLATTEN, add("conv1", "flatten"), dense(10)),
     "layer 2 (add): cannot add images and flat inputs: conv1 (6, 6, 4), flatten (144,)"),
    ((conv(4), FLATTEN, concatenate("conv1", "flatten"), dense(10)),
     "layer 2 (concatenate): cannot join images and flat inputs: conv1 (6, 6, 4), flatten (144,)"),
    ((conv(4), FLATTEN, {**conv(9), "inputs": ["conv1"]}, {"type": "flatten", "inputs": ["conv2"]},
      add("flatten", "flatten2"), dense(10)),
     "layer 4 (add): adds features flattened from different shapes (flatten (144,), flatten2 (144,)); put a dense "
     "layer before the add"),
    ((conv(4), pool(), concatenate("conv1", "pool1"), FLATTEN, dense(10)),
     "layer 2 (concatenate): concatenate joins channels of images of one height and width, got conv1 (6, 6, 4), "
     "pool1 (3, 3, 4)"),
    ((conv(4), FLATTEN, {"type": "flatten", "inputs": ["conv1"]}, concatenate("flatten", "flatten2"), dense(10)),
     "layer 3 (concatenate): joins flattened features (flatten (144,), flatten2 (144,)); put a dense layer after "
     "each flatten, or concatenate the images before one flatten"),
    ((conv(4), {**conv(4), "inputs": ["input"]}, FLATTEN, dense(10)),
     "the output of conv1 is never read: every layer but the last (the output) must be one of some later layer's "
     "inputs"),
    ((conv(4), FLATTEN, conv(4), FLATTEN, dense(10)),
     "layer 2 (conv2d): needs an image input (H, W, C), got (144,) after Flatten"),
])
def test_graph_errors_word_for_word(layers, message):
    with pytest.raises(SpecError) as caught:
        Spec((8, 8, 3), layers).info
    assert str(caught.value) == message


def brute_force_cells(size, pool_size, stride, before, out):
    """Per window, how many of its cells lie inside the unpadded input: count them one by one."""
    return [sum(0 <= i * stride - before + k < size for k in range(pool_size)) for i in range(out)]


@pytest.mark.parametrize("input_shape,layer", [
    ((7, 9, 2), avgpool(3, 2, "same")),  # odd padded cell after, as TensorFlow pads
    ((6, 5, 2), avgpool(2, 1, "same")),
    ((9, 9, 2), avgpool(4, 3, "same")),
    ((8, 11, 2), avgpool(3, 1, [[2, 0], [1, 3]])),  # explicit, one-sided
    ((5, 5, 2), avgpool(2, 2)),  # 'valid': every cell is real
])
def test_real_cells_count_each_window_s_unpadded_cells(input_shape, layer):
    (info,) = [i for i in Spec(input_shape, (layer, FLATTEN, dense(3))).info if i.type == "avgpool2d"]
    rows, cols = real_cells(info)
    expected = [brute_force_cells(size, pool, stride, before, out) for size, pool, stride, (before, _), out in
                zip(input_shape[:2], info.config["pool_size"], info.config["strides"], info.padding,
                    info.output_shape[:2])]
    assert (rows, cols) == tuple(expected)
    assert len(rows) == info.output_shape[0] and len(cols) == info.output_shape[1]
    padded = np.pad(np.ones(input_shape[:2]), info.padding)  # the same counts from a sum over each window
    ph, pw = info.config["pool_size"]
    sh, sw = info.config["strides"]
    sums = [[padded[r * sh:r * sh + ph, c * sw:c * sw + pw].sum() for c in range(len(cols))] for r in range(len(rows))]
    assert np.array_equal(np.outer(rows, cols), sums)


def test_canonical_gives_activations_their_own_layers_and_rewires_the_graph_to_them():
    """An add that read conv1 (ReLU inside) reads conv1's activation layer once that is its own layer; a
    leaky ReLU keeps its slope; names follow the new order; weighted layers keep theirs."""
    from twincnn.spec import activation, canonical

    spec = Spec((8, 8, 3), (conv(4, 3, 1, "same"), {**conv(4, 3, 1, "same", "leaky_relu"), "negative_slope": 0.2},
                            add("conv1", "conv2"), activation("relu"), {**pool(), "inputs": ["act1"]}, FLATTEN,
                            dense(10, "relu"), dense(10)))
    conv_layer = {"type": "conv2d", "filters": 4, "kernel_size": (3, 3), "strides": (1, 1),
                  "padding": [[1, 1], [1, 1]], "dilation_rate": (1, 1), "groups": 1, "use_bias": True,
                  "activation": None}
    assert canonical(spec).layers == (
        conv_layer, {"type": "activation", "activation": "relu"},
        conv_layer, {"type": "activation", "activation": "leaky_relu", "negative_slope": 0.2},
        {"type": "add", "inputs": ["act1", "act2"]}, {"type": "activation", "activation": "relu"},
        {"type": "maxpool2d", "pool_size": (2, 2), "strides": (2, 2), "padding": "valid"}, {"type": "flatten"},
        {"type": "dense", "units": 10, "use_bias": True, "activation": None},
        {"type": "activation", "activation": "relu"}, {"type": "dense", "units": 10, "use_bias": True})
    assert [i.name for i in canonical(spec).info] == ["conv1", "act1", "conv2", "act2", "add1", "act3", "pool1",
                                                      "flatten", "fc1", "act4", "fc2"]
    assert canonical(canonical(spec)) == canonical(spec) and canonical(spec).weight_shapes() == spec.weight_shapes()


def test_canonical_keeps_a_zero_pad_that_two_layers_read():
    from twincnn.spec import canonical, zeropad

    spec = Spec((8, 8, 3), (zeropad(1), conv(3), {**conv(3, activation=None), "inputs": ["zpad1"]},
                            add("conv1", "conv2"), FLATTEN, dense(10)))
    conv_layer = {"type": "conv2d", "filters": 3, "kernel_size": (3, 3), "strides": (1, 1), "padding": "valid",
                  "dilation_rate": (1, 1), "groups": 1, "use_bias": True}
    assert canonical(spec).layers == (
        {"type": "zeropad2d", "padding": [[1, 1], [1, 1]]}, {**conv_layer, "activation": None},
        {"type": "activation", "activation": "relu"}, {**conv_layer, "inputs": ["zpad1"]},
        {"type": "add", "inputs": ["act1", "conv2"]}, {"type": "flatten"},
        {"type": "dense", "units": 10, "use_bias": True})


def test_zero_pads_and_layers_without_bias_by_hand():
    """Input 5x7x2; zpad1 adds rows (1, 2) and columns (3, 0): 8x10x2; conv1 3x3 without bias: 6x8x4, 72
    weights; fc1 without bias: 192 x 10."""
    from twincnn.spec import zeropad

    spec = Spec((5, 7, 2), (zeropad([[1, 2], [3, 0]]), {**conv(4), "use_bias": False}, FLATTEN,
                            {**dense(10), "use_bias": False}))
    rows = [(i.name, i.output_shape, i.weight_shapes, i.params, i.padding) for i in spec.info]
    assert rows == [("zpad1", (8, 10, 2), {}, 0, ((1, 2), (3, 0))),
                    ("conv1", (6, 8, 4), {"kernel": (3, 3, 2, 4)}, 72, ((0, 0), (0, 0))),
                    ("flatten", (192,), {}, 0, None), ("fc1", (10,), {"kernel": (192, 10)}, 1920, None)]
    assert spec.info[0].config == {"type": "zeropad2d", "padding": ((1, 2), (3, 0))}
    assert spec.info[1].config["use_bias"] is False and spec.info[3].config["use_bias"] is False


@pytest.mark.parametrize("layers,message", [
    (({"type": "zeropad2d"}, FLATTEN, dense(10)),
     "layer 0 (zeropad2d): needs a padding, an int or [[top, bottom], [left, right]]"),
    (({"type": "zeropad2d", "padding": "same"}, FLATTEN, dense(10)),
     "layer 0 (zeropad2d): padding must be an int >= 0 or [[top, bottom], [left, right]], got 'same'"),
    (({**conv(4), "use_bias": "yes"}, FLATTEN, dense(10)),
     "layer 0 (conv2d): use_bias must be true or false, got 'yes'"),
    ((FLATTEN, {**dense(10), "use_bias": 1}), "layer 1 (dense): use_bias must be true or false, got 1"),
])
def test_zero_pad_and_bias_errors_word_for_word(layers, message):
    with pytest.raises(SpecError) as caught:
        Spec((8, 8, 3), layers).info
    assert str(caught.value) == message


def test_canonical_numbers_layers_of_each_type_in_order():
    from twincnn.spec import canonical

    spec = Spec((8, 8, 3), (conv(4), FLATTEN, {"type": "flatten", "inputs": "conv1"},
                            {**dense(5), "inputs": ["flatten"]}, {**dense(5), "inputs": ["flatten2"]},
                            add("fc1", "fc2"), dense(10)))
    assert [i.name for i in canonical(spec).info] == ["conv1", "act1", "flatten", "flatten2", "fc1", "fc2", "add1",
                                                      "fc3"]
    assert canonical(spec).layers[2] == {"type": "flatten"}  # reads the activation, as it read conv1
    assert canonical(spec).layers[5] == {"type": "dense", "units": 5, "use_bias": True, "inputs": ["flatten2"]}


def test_describe_names_the_inputs_of_layers_that_do_not_read_the_layer_before():
    spec = Spec((8, 8, 3), (conv(4, 3, 1, "same"), conv(4, 3, 1, "same"), add("conv1", "conv2"), FLATTEN,
                            dense(10)))
    assert spec.describe() == (
        "input(8, 8, 3) -> conv1(filters=4, kernel_size=(3, 3), strides=(1, 1), padding=same, activation=relu) -> "
        "conv2(filters=4, kernel_size=(3, 3), strides=(1, 1), padding=same, activation=relu) -> "
        "add1(inputs=['conv1', 'conv2']) -> flatten() -> fc1(units=10, activation=None)")


def test_an_activation_layer_helper_reads_the_named_input():
    assert activation("relu", ["conv1"]) == {"type": "activation", "activation": "relu", "inputs": ["conv1"]}
    assert activation("relu") == {"type": "activation", "activation": "relu"}
    spec = Spec((8, 8, 3), (conv(4, padding="same"), conv(4, padding="same"), activation("relu", ["conv1"]),
                            add("conv2", "act1"), FLATTEN, dense(10)))
    assert [(i.name, i.inputs) for i in spec.info[2:4]] == [("act1", ("conv1",)), ("add1", ("conv2", "act1"))]


@pytest.mark.parametrize("layers,message", [
    # the error names what made the input flat, through every layer that keeps it flat
    ((conv(4), FLATTEN, dense(5), conv(4), FLATTEN, dense(10)),
     "layer 3 (conv2d): needs an image input (H, W, C), got (5,) after Flatten"),
    ((conv(4), FLATTEN, dropout(0.5), conv(4), FLATTEN, dense(10)),
     "layer 3 (conv2d): needs an image input (H, W, C), got (144,) after Flatten"),
    ((conv(4), GLOBAL_AVG_POOL, dense(5), pool(), FLATTEN, dense(10)),
     "layer 3 (maxpool2d): needs an image input (H, W, C), got (5,) after globalavgpool2d"),
    # a merge's: its first input's
    ((conv(4), FLATTEN, dense(5), {**GLOBAL_AVG_POOL, "inputs": ["conv1"]}, dense(5), add("fc1", "fc2"),
      conv(4), FLATTEN, dense(10)),
     "layer 6 (conv2d): needs an image input (H, W, C), got (5,) after Flatten"),
    ((conv(4), FLATTEN, dense(5), {**GLOBAL_AVG_POOL, "inputs": ["conv1"]}, dense(5), concatenate("fc2", "fc1"),
      conv(4), FLATTEN, dense(10)),
     "layer 6 (conv2d): needs an image input (H, W, C), got (10,) after globalavgpool2d"),
    ((conv(4), {"type": "activation"}, FLATTEN, dense(10)),
     "layer 1 (activation): needs an activation, one of relu, relu6, sigmoid, tanh, elu, silu, gelu, gelu_tanh, "
     "leaky_relu"),
    ((conv(4), {**conv(4), "inputs": ["input"]}, {**conv(4), "inputs": ["input"]}, FLATTEN, dense(10)),
     "the output of conv1, conv2 is never read: every layer but the last (the output) must be one of some later "
     "layer's inputs"),
    ((conv(4), FLATTEN, dense(5), {**dense(10), "inputs": ["flatten"]}),
     "the output of fc1 is never read: every layer but the last (the output) must be one of some later layer's "
     "inputs"),
    ((depthwise(), {"type": "depthwiseconv2d", "use_bias": "yes"}, FLATTEN, dense(10)),
     "layer 1 (depthwiseconv2d): use_bias must be true or false, got 'yes'"),
])
def test_more_graph_errors_word_for_word(layers, message):
    with pytest.raises(SpecError) as caught:
        Spec((8, 8, 3), layers).info
    assert str(caught.value) == message


def test_a_dense_layer_after_a_concatenation_of_flat_features_has_no_image_layout():
    spec = Spec((8, 8, 3), (conv(4), FLATTEN, dense(5), {**FLATTEN, "inputs": ["conv1"]}, dense(5),
                            concatenate("fc1", "fc2"), dense(10)))
    assert [(i.name, i.flatten_from) for i in spec.info[-3:]] == [("fc2", (6, 6, 4)), ("concat1", None),
                                                                  ("fc3", None)]


@pytest.mark.parametrize("padding", [[[1, 1], [1]], [[1, 1], [1, 1], [1, 1]], [[1, -1], [1, 1]], [[True, 1], [1, 1]],
                                     [[1.0, 1], [1, 1]], "ab"])
def test_explicit_padding_must_be_two_pairs_of_ints_at_least_zero(padding):
    with pytest.raises(SpecError) as caught:
        Spec((8, 8, 3), (conv(4, padding=padding), FLATTEN, dense(10))).info
    assert str(caught.value) == ("layer 0 (conv2d): padding must be 'valid', 'same', an int >= 0 or "
                                 f"[[top, bottom], [left, right]], got {padding!r}")


def test_zero_padding_is_valid_and_one_sided_padding_pads_that_side():
    for zero in (0, [[0, 0], [0, 0]]):
        spec = Spec((8, 8, 3), (conv(4, padding=zero), FLATTEN, dense(10)))
        assert spec == Spec((8, 8, 3), (conv(4), FLATTEN, dense(10))) and spec.info[0].config["padding"] == "valid"
    top = Spec((8, 8, 3), (conv(4, padding=[[1, 0], [0, 0]]), FLATTEN, dense(10))).info[0]
    right = Spec((8, 8, 3), (conv(4, padding=[[0, 0], [0, 1]]), FLATTEN, dense(10))).info[0]
    assert (top.output_shape, top.padding) == ((7, 6, 4), ((1, 0), (0, 0)))
    assert (right.output_shape, right.padding) == ((6, 7, 4), ((0, 0), (0, 1)))
