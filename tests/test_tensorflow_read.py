"""Reading a Keras model the user wrote into a spec: the spec it reads to, and the model's own outputs against
the NumPy reference run on that spec with the weights read from the model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.helpers import (GRAD_ATOL, LOGIT_ATOL, NORM_GRAD_ATOL, assert_close, assert_reading_matches_reference,
                           require, scaled)
from twincnn import reference, zoo
from twincnn.errors import UserError
from twincnn.spec import DEFAULT_SPEC, Spec, canonical
from twincnn.weights import random_weights

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def tfb():
    return require("tensorflow")


@pytest.fixture(scope="module")
def keras(tfb):
    return tfb.keras


@pytest.fixture(scope="module")
def read_model(tfb):
    from twincnn.backends.tensorflow_read import read_model

    return read_model


def images(shape, n=4, seed=0, scale=1.0):
    return (np.random.default_rng(seed).random((n, *shape), np.float32) * scale).astype(np.float32)


def set_random(read, seed=1):
    weights = random_weights(read.spec, seed)
    read.set_weights(weights)
    return weights


# -- the notebook's model -----------------------------------------------------------------------------
def notebook_model(keras):
    with warnings.catch_warnings():  # Keras 3 prefers keras.Input, but still takes input_shape as the notebook wrote
        warnings.simplefilter("ignore", UserWarning)
        return keras.Sequential([
            keras.layers.Conv2D(28, (3, 3), activation='relu', input_shape=(28, 28, 1)),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Conv2D(64, (3, 3), activation='relu'),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Conv2D(64, (3, 3), activation='relu'),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation='relu'),
            keras.layers.Dense(10)])


def test_notebook_model_reads_as_the_default_spec(keras, read_model):
    model = notebook_model(keras)
    read = read_model(model)
    assert read.spec == canonical(DEFAULT_SPEC)
    assert canonical(read.spec) == read.spec
    first = model.layers[0].name
    assert read.paths["conv1"] == first and read.paths["act1"] == first
    assert read.paths["fc2"] == model.layers[-1].name
    assert read.notes == []
    assert_reading_matches_reference(read, images((28, 28, 1)), "notebook model")


def test_a_split_activation_gives_the_output_before_it(keras, read_model):
    """conv1 is the convolution before its relu: negative values stay, as in the spec's conv1."""
    read = read_model(notebook_model(keras))
    set_random(read)
    outputs = read.activations(images((28, 28, 1)) - 0.5)
    assert outputs["conv1"].min() < 0 and outputs["act1"].min() == 0
    np.testing.assert_array_equal(outputs["act1"], np.maximum(outputs["conv1"], 0))


def test_loss_and_gradients_equal_the_twin_built_from_the_spec(tfb, keras, read_model):
    read = read_model(resnet_block(keras))
    weights = set_random(read)
    twin = tfb.build(read.spec)
    tfb.set_weights(twin, read.spec, weights)
    x, y = images((8, 8, 3), n=6), np.arange(6) % 10
    loss, grads = read.loss_and_grads(x, y)
    twin_loss, twin_grads = tfb.loss_and_grads(twin, read.spec, x, y)
    assert list(grads) == list(read.spec.trainable_weight_shapes())
    assert abs(loss - twin_loss) <= GRAD_ATOL
    assert_close(grads, twin_grads, NORM_GRAD_ATOL, "gradients: read model vs twin")


# -- a functional ResNet block -----------------------------------------------------------------------
def resnet_block(keras):
    layers = keras.layers
    image = keras.Input((8, 8, 3), name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="block1_conv1")(image)
    x = layers.BatchNormalization(name="block1_bn1")(x)
    x = layers.Activation("relu", name="block1_relu1")(x)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="block1_conv2")(x)
    x = layers.BatchNormalization(name="block1_bn2")(x)
    shortcut = layers.Conv2D(8, 1, strides=2, use_bias=False, name="block1_projection")(image)
    shortcut = layers.BatchNormalization(name="block1_projection_bn")(shortcut)
    x = layers.Add(name="block1_add")([x, shortcut])
    x = layers.Activation("relu", name="block1_out")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, layers.Dense(10, name="logits")(x))


def no_bias_conv(filters, kernel_size, strides, padding, **extra):
    return {"type": "conv2d", "filters": filters, "kernel_size": kernel_size, "strides": strides,
            "padding": padding, "use_bias": False, **extra}


RESNET_BLOCK_SPEC = Spec((8, 8, 3), (
    no_bias_conv(8, 3, 2, [[0, 1], [0, 1]]),  # TensorFlow's 'same' on 8 pixels, stride 2: the odd pixel after
    {"type": "batchnorm"},
    {"type": "activation", "activation": "relu"},
    no_bias_conv(8, 3, 1, 1),
    {"type": "batchnorm"},
    no_bias_conv(8, 1, 2, "valid", inputs=["input"]),
    {"type": "batchnorm"},
    {"type": "add", "inputs": ["bn2", "bn3"]},
    {"type": "activation", "activation": "relu"},
    {"type": "globalavgpool2d"},
    {"type": "dense", "units": 10},
))


def test_resnet_block_reads_its_graph_with_the_user_names(keras, read_model):
    read = read_model(resnet_block(keras))
    assert read.spec == canonical(RESNET_BLOCK_SPEC)
    assert canonical(read.spec) == read.spec
    assert read.paths == {"conv1": "block1_conv1", "bn1": "block1_bn1", "act1": "block1_relu1",
                          "conv2": "block1_conv2", "bn2": "block1_bn2", "conv3": "block1_projection",
                          "bn3": "block1_projection_bn", "add1": "block1_add", "act2": "block1_out",
                          "gap1": "pool", "fc1": "logits"}


def test_resnet_block_weights_round_trip_and_logits_match_the_reference(keras, read_model):
    read = read_model(resnet_block(keras))
    weights = set_random(read, seed=3)
    got = read.get_weights()
    assert list(got) == list(read.spec.weight_shapes())
    for name, value in weights.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert read.model.model.get_layer("block1_projection_bn").moving_variance.numpy() == pytest.approx(
        weights["bn3/moving_variance"])
    assert_reading_matches_reference(read, images((8, 8, 3)), "resnet block")


# -- twincnn's own twins -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", zoo.names())
def test_twincnn_twin_reads_back_to_its_spec(tfb, read_model, name):
    spec = zoo.load(name)
    model = tfb.build(spec, seed=0)  # a functional model for a graph spec, a Sequential otherwise
    read = read_model(model)
    assert read.spec == canonical(spec)
    weights = random_weights(spec, 2)
    tfb.set_weights(model, spec, weights)
    got = read.get_weights()
    assert list(got) == list(weights)
    for key, value in weights.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    again = random_weights(spec, 3)
    read.set_weights(again)
    for key, value in tfb.get_weights(model, spec).items():
        np.testing.assert_array_equal(value, again[key], err_msg=key)
    assert_reading_matches_reference(read, images(spec.input_shape), name)


# -- padding --------------------------------------------------------------------------------------------
def conv_then_dense(keras, *front):
    return keras.Sequential([keras.Input((8, 8, 3)), *front, keras.layers.Flatten(), keras.layers.Dense(10)])


def test_zero_padding_read_by_one_conv_is_its_padding(keras, read_model):
    layers = keras.layers
    padded = read_model(conv_then_dense(keras, layers.ZeroPadding2D(((0, 1), (0, 1))),
                                        layers.Conv2D(4, 3, strides=2, padding="valid")))
    same = read_model(conv_then_dense(keras, layers.Conv2D(4, 3, strides=2, padding="same")))
    assert padded.spec == same.spec
    assert padded.spec.info[0].padding == ((0, 1), (0, 1))
    assert canonical(padded.spec) == padded.spec
    set_random(padded)
    assert_reading_matches_reference(padded, images((8, 8, 3)), "zero padding + valid conv")


def test_zero_padding_before_a_max_pool_stays_a_layer(keras, read_model):
    """Zeros are values a max can pick: they are not a pool's padding, which no max counts."""
    layers = keras.layers
    read = read_model(conv_then_dense(keras, layers.ZeroPadding2D(1), layers.MaxPooling2D(2)))
    assert [info.type for info in read.spec.info] == ["zeropad2d", "maxpool2d", "flatten", "dense"]
    assert read.spec.info[1].padding == ((0, 0), (0, 0))
    set_random(read)
    x = -images((8, 8, 3), scale=1.0) - 0.1  # all negative: the padded zeros win the border windows
    assert_reading_matches_reference(read, x, "zero padding + max pool")


def test_twin_with_explicit_padding_reads_back(tfb, read_model):
    """twincnn's twin pads explicitly with its own layers (zeros before a convolution, -inf before a max
    pool); read back, they are the layers' padding again, and a zeropad2d before a max pool stays one."""
    spec = Spec((9, 9, 2), (
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": [[1, 2], [0, 1]], "activation": "relu"},
        {"type": "maxpool2d", "pool_size": 3, "strides": 2, "padding": 1},
        {"type": "zeropad2d", "padding": [[0, 1], [1, 0]]},
        {"type": "maxpool2d", "pool_size": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 10},
    ))
    read = read_model(tfb.build(spec, seed=0))
    assert read.spec == canonical(spec)
    set_random(read)
    assert_reading_matches_reference(read, images((9, 9, 2)) - 0.5, "explicit padding")


# -- MobileNetV2 style -----------------------------------------------------------------------------------
def inverted_residual(keras):
    layers = keras.layers
    image = keras.Input((8, 8, 4))
    x = layers.Conv2D(16, 1, use_bias=False, name="expand")(image)
    x = layers.BatchNormalization(name="expand_bn")(x)
    x = layers.ReLU(6., name="expand_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(x)
    x = layers.BatchNormalization(name="depthwise_bn")(x)
    x = layers.ReLU(max_value=6., name="depthwise_relu")(x)
    x = layers.Conv2D(4, 1, use_bias=False, name="project")(x)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.Add(name="add")([image, x])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(10)(x))


def test_inverted_residual_reads_relu6_and_a_depthwise_without_bias(keras, read_model):
    read = read_model(inverted_residual(keras))
    info = {i.name: i for i in read.spec.info}
    assert [i.activation for i in read.spec.info if i.type == "activation"] == ["relu6", "relu6"]
    assert info["dw1"].config["use_bias"] is False and "bias" not in info["dw1"].weight_shapes
    assert info["dw1"].padding == ((1, 1), (1, 1))
    assert info["add1"].inputs == ("input", "bn3")
    assert canonical(read.spec) == read.spec
    set_random(read)
    x = images((8, 8, 4), scale=20.0)
    outputs = read.activations(x)
    assert outputs["bn1"].max() > 6  # relu6 clips here: a plain relu would not match the reference
    assert_reading_matches_reference(read, x, "inverted residual")


# -- other layers ---------------------------------------------------------------------------------------
def test_activations_by_name_and_as_layers(tfb, keras, read_model):
    layers = keras.layers
    model = conv_then_dense(
        keras,
        layers.Conv2D(4, 3, activation="elu"),
        layers.Activation("gelu"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(4, 1, activation="swish"),
        layers.Activation("leaky_relu"),
        layers.ReLU(negative_slope=0.1),
        layers.Activation("sigmoid"),
        layers.Activation("linear"),
        tfb.GELU(approximate=True),
        layers.Activation("tanh"),
    )
    read = read_model(model)
    acts = [(i.activation, i.config.get("negative_slope")) for i in read.spec.info if i.type == "activation"]
    assert acts == [("elu", None), ("gelu", None), ("leaky_relu", 0.2), ("silu", None), ("leaky_relu", 0.2),
                    ("leaky_relu", 0.1), ("sigmoid", None), ("gelu_tanh", None), ("tanh", None)]
    set_random(read)
    assert_reading_matches_reference(read, images((8, 8, 3), scale=4.0) - 2.0, "activations")


def test_separable_conv_splits_and_keepdims_pool_with_flatten_reads(keras, read_model):
    layers = keras.layers
    model = conv_then_dense(keras, layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2,
                                                          activation="relu", name="sep"),
                            layers.Dropout(0.25), layers.GlobalAveragePooling2D(keepdims=True))
    read = read_model(model)
    assert [i.type for i in read.spec.info] == ["depthwiseconv2d", "conv2d", "activation", "dropout",
                                                "globalavgpool2d", "dense"]
    assert read.paths["dw1"] == read.paths["conv1"] == "sep"
    set_random(read)
    assert_reading_matches_reference(read, images((8, 8, 3)), "separable conv")


def test_nested_model_is_flattened(keras, read_model):
    layers = keras.layers
    block = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3, name="inner_conv"),
                              layers.LayerNormalization(epsilon=1e-5, name="inner_ln")], name="block")
    image = keras.Input((8, 8, 3))
    x = block(image)
    y = layers.Conv2D(4, 3, name="side")(image)
    x = layers.Concatenate(name="join")([x, y])
    model = keras.Model(image, layers.Dense(10)(layers.Flatten()(x)))
    read = read_model(model)
    assert read.paths["conv1"] == "block/inner_conv" and read.paths["ln1"] == "block/inner_ln"
    assert read.spec.info[3].type == "concatenate" and read.spec.info[3].inputs == ("ln1", "conv2")
    set_random(read)
    assert_reading_matches_reference(read, images((8, 8, 3)), "nested model")


# -- refusals ---------------------------------------------------------------------------------------------
def assert_refused(read_model, model, layer_name, *words):
    with pytest.raises(UserError) as refused:
        read_model(model)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{layer_name} ("), message
    assert "not expressible in a twincnn spec" in message
    for word in words:
        assert word in message, message


def test_refuses_a_preprocessing_layer(keras, read_model):
    model = conv_then_dense(keras, keras.layers.Rescaling(1 / 255, name="scale"), keras.layers.Conv2D(4, 3))
    assert_refused(read_model, model, "scale", "Rescaling", "remove it")


def test_refuses_channels_first(keras, read_model):
    model = keras.Sequential([keras.Input((3, 8, 8)), keras.layers.Conv2D(4, 3, data_format="channels_first",
                                                                          name="nchw"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    assert_refused(read_model, model, "nchw", "channels_first")


def test_a_final_softmax_is_the_output_head(keras, read_model):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax", name="probabilities")])
    read = read_model(model)
    assert read.spec.output == "softmax" and read.spec.info[-1].type == "dense"
    assert read.paths["fc1"] == "probabilities"


def test_refuses_a_softmax_inside_the_network(keras, read_model):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax", name="probabilities"),
                              keras.layers.Dense(10)])
    assert_refused(read_model, model, "probabilities", "softmax inside the network", "output head")


def test_refuses_an_activation_on_the_output_before_the_head(keras, read_model):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="relu", name="rectified"),
                              keras.layers.Softmax()])
    assert_refused(read_model, model, "rectified", "'relu' on the output", "softmax or log_softmax")


@pytest.mark.parametrize("unsupported", ["reshape_lstm", "global_max", "shared"])
def test_refuses_what_the_spec_cannot_say(keras, read_model, unsupported):
    layers = keras.layers
    image = keras.Input((8, 8, 3))
    if unsupported == "reshape_lstm":
        x = layers.LSTM(5, name="recurrent")(layers.Reshape((8, 24), name="to_rows")(image))
        model, name, word = keras.Model(image, layers.Dense(10)(x)), "to_rows", "Reshape"
    elif unsupported == "global_max":
        x = layers.GlobalMaxPooling2D(name="gmp")(layers.Conv2D(4, 3)(image))
        model, name, word = keras.Model(image, layers.Dense(10)(x)), "gmp", "GlobalMaxPooling2D"
    else:
        conv = layers.Conv2D(3, 3, padding="same", name="twice")
        model = keras.Model(image, layers.Dense(10)(layers.Flatten()(conv(conv(image)))))
        name, word = "twice", "shared weights"
    assert_refused(read_model, model, name, word)


def test_a_spec_check_names_the_keras_layer(keras, read_model):
    """Dense on an image: the spec's own check, reported with the Keras layer's name."""
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Dense(4, name="per_pixel"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    assert_refused(read_model, model, "per_pixel", "flat input")


# -- keras.applications ------------------------------------------------------------------------------------
def test_keras_mobilenetv2_reads_and_matches_the_reference(keras, read_model):
    model = keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(32, 32, 3), classes=10,
                                           classifier_activation=None)
    read = read_model(model)
    assert canonical(read.spec) == read.spec
    assert {i.activation for i in read.spec.info if i.type == "activation"} == {"relu6"}
    set_random(read)
    x = images((32, 32, 3))
    logits = read.predict(x)
    assert_close(logits, reference.forward(read.spec, read.get_weights(), x), scaled(LOGIT_ATOL, logits),
                 "MobileNetV2")


@pytest.mark.slow
def test_keras_resnet50_reads_and_matches_the_reference(keras, read_model):
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10,
                                        classifier_activation=None)
    read = read_model(model)
    assert canonical(read.spec) == read.spec
    set_random(read)
    x = images((32, 32, 3))
    logits = read.predict(x)
    assert_close(logits, reference.forward(read.spec, read.get_weights(), x), scaled(LOGIT_ATOL, logits),
                 "ResNet50")


def test_a_model_of_open_height_and_width_is_read_at_the_size_given(keras, read_model):
    """A fully convolutional classifier (keras.Input((None, None, C))) is read at the data's size, on its own
    variables: what the reading sets, the user's model holds."""
    layers = keras.layers
    model = keras.Sequential([keras.Input((None, None, 3)), layers.Conv2D(4, 3, activation="relu"),
                              layers.GlobalAveragePooling2D(), layers.Dense(2)])
    read = read_model(model, (12, 10, 3))
    assert read.spec.input_shape == (12, 10, 3) and [i.type for i in read.spec.info] == \
        ["conv2d", "activation", "globalavgpool2d", "dense"]
    weights = set_random(read)
    x = images((12, 10, 3))
    assert_close(np.asarray(model(x)), reference.forward(read.spec, weights, x), LOGIT_ATOL, "the user's own model")
    with pytest.raises(UserError, match=r"input shape \(None, None, 3\); .* of a fixed size"):
        read_model(model)
    with pytest.raises(UserError, match=r"takes input of shape \(None, None, 3\), not \(12, 10, 1\)"):
        read_model(model, (12, 10, 1))
