"""The spec's arithmetic, checked by hand for the notebook's CNN, and its validation errors."""

import pytest

from twincnn.spec import DEFAULT_SPEC, FLATTEN, Spec, SpecError, conv, dense, pool, same_padding


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
    ((conv(8, padding="full"), FLATTEN, dense(10)), "padding must be 'valid' or 'same'"),
    ((conv(8, activation="tanh"), FLATTEN, dense(10)), "activation must be 'relu'"),
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
