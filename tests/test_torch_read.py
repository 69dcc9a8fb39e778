"""Reading a PyTorch nn.Module the user wrote into a twincnn spec (backends/torch_read.py).

The read spec is checked against the spec the module means, and the module's own outputs against the NumPy
reference run on the weights read from it: a wrong layout (the (C, H, W) flatten order, a transposed kernel)
or a misread setting (which side the padding goes) moves logits by ~0.1, far outside LOGIT_ATOL.
"""

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from tests.helpers import (GRAD_ATOL, LOGIT_ATOL, NORM_GRAD_ATOL, assert_close,  # noqa: E402
                           assert_reading_matches_reference, scaled)
from tests.notebook_cnn import CNN  # noqa: E402
from twincnn import reference, zoo  # noqa: E402
from twincnn.backends import torch as tb  # noqa: E402
from twincnn.backends.torch_read import read_model  # noqa: E402
from twincnn.errors import UserError  # noqa: E402
from twincnn.spec import DEFAULT_SPEC, Spec, canonical  # noqa: E402
from twincnn.weights import random_weights  # noqa: E402

pytestmark = pytest.mark.torch


def images(shape, n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


# -- 1. the notebook's model, as written (tests/notebook_cnn.py) -----------------------------------------
def test_notebook_model_reads_as_the_default_spec():
    torch.manual_seed(0)
    read = read_model(CNN(), (28, 28, 1))
    assert read.spec == canonical(DEFAULT_SPEC)
    assert canonical(read.spec) == read.spec
    assert [i.name for i in canonical(read.spec).info] == [i.name for i in read.spec.info]
    assert (read.paths["pool1"], read.paths["pool2"]) == ("pool", "pool")  # one module, used twice
    assert (read.paths["conv2"], read.paths["fc1"]) == ("conv2", "fc1")
    assert read.notes == []
    assert_reading_matches_reference(read, images((28, 28, 1)), "notebook CNN")


def test_notebook_model_gradients_match_twincnns_twin():
    """loss_and_grads on the user's module equals the twin's on the same weights: fc1's gradient comes back
    in the spec's (H, W, C) row order, not the module's (C, H, W) one."""
    read = read_model(CNN(), (28, 28, 1))
    weights = random_weights(read.spec, 3)
    read.set_weights(weights)
    twin = tb.build(read.spec)
    tb.set_weights(twin, read.spec, weights)
    x, y = images((28, 28, 1), n=8), np.arange(8) % 10
    loss, grads = read.loss_and_grads(x, y)
    twin_loss, twin_grads = tb.loss_and_grads(twin, read.spec, x, y)
    assert list(grads) == list(read.spec.trainable_weight_shapes())
    assert abs(loss - twin_loss) <= scaled(LOGIT_ATOL, twin_loss)
    assert_close(grads, twin_grads, GRAD_ATOL, "user's CNN vs twin: gradients")


def test_predict_and_gradients_leave_the_modules_mode():
    read = read_model(CNN(), (28, 28, 1))
    read.model.module.train()
    read.predict(images((28, 28, 1), n=2))
    assert read.model.module.training and read.model.module.conv1.training
    read.model.module.eval()
    read.loss_and_grads(images((28, 28, 1), n=2), np.array([1, 2]))
    assert not read.model.module.training and not read.model.module.fc1.training


def test_predict_and_gradients_leave_each_submodules_own_mode():
    """A module kept partly in eval mode (a frozen part) is left so, not set to its parent's mode."""
    read = read_model(CNN(), (28, 28, 1))
    read.model.module.train()
    read.model.module.conv1.eval()
    read.predict(images((28, 28, 1), n=2))
    read.loss_and_grads(images((28, 28, 1), n=2), np.array([1, 2]))
    assert read.model.module.training and not read.model.module.conv1.training


# -- 2. a residual block written without twincnn's names -------------------------------------------------
class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.n1 = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False)
        self.n2 = nn.BatchNorm2d(8)
        self.proj = nn.Conv2d(4, 8, 1, stride=2)
        self.squash = nn.AdaptiveAvgPool2d((1, 1))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.n1(self.a(x)))
        out = F.relu(self.n2(self.b(x)) + self.proj(x))
        return self.head(torch.flatten(self.squash(out), 1))


RESIDUAL_SPEC = Spec((12, 10, 3), [
    {"type": "conv2d", "filters": 4, "padding": 1, "use_bias": False},
    {"type": "batchnorm", "momentum": 0.9, "epsilon": 1e-5},
    {"type": "activation", "activation": "relu"},
    {"type": "conv2d", "filters": 8, "strides": 2, "padding": 1, "use_bias": False},
    {"type": "batchnorm", "momentum": 0.9, "epsilon": 1e-5},
    {"type": "conv2d", "filters": 8, "kernel_size": 1, "strides": 2, "inputs": ["act1"]},
    {"type": "add", "inputs": ["bn2", "conv3"]},
    {"type": "activation", "activation": "relu"},
    {"type": "globalavgpool2d"},
    {"type": "dense", "units": 5},
])


def test_residual_block_reads_as_a_graph_spec():
    read = read_model(Residual(), (12, 10, 3))
    assert read.spec == canonical(RESIDUAL_SPEC)
    assert not read.spec.is_sequential
    assert {k: read.paths[k] for k in ("conv1", "bn1", "conv2", "conv3", "gap1", "fc1")} == {
        "conv1": "a", "bn1": "n1", "conv2": "b", "conv3": "proj", "gap1": "squash", "fc1": "head"}
    weights = random_weights(read.spec, 5)
    read.set_weights(weights)
    got = read.get_weights()
    assert list(got) == list(read.spec.weight_shapes())
    for name, value in weights.items():
        assert np.array_equal(got[name], value), name
    assert np.array_equal(read.model.module.b.weight.detach().numpy(), weights["conv2/kernel"].transpose(3, 2, 0, 1))
    assert_reading_matches_reference(read, images((12, 10, 3)), "residual block")


def test_residual_block_gradients_match_twincnns_twin():
    """In training mode nn.BatchNorm2d normalises with the biased batch variance, as the spec does: the
    gradients agree (only the running variance it keeps differs, which the notes say)."""
    read = read_model(Residual(), (12, 10, 3))
    weights = random_weights(read.spec, 6)
    read.set_weights(weights)
    twin = tb.build(read.spec)
    tb.set_weights(twin, read.spec, weights)
    x, y = images((12, 10, 3), n=6), np.arange(6) % 5
    loss, grads = read.loss_and_grads(x, y)
    twin_loss, twin_grads = tb.loss_and_grads(twin, read.spec, x, y)
    assert abs(loss - twin_loss) <= scaled(LOGIT_ATOL, twin_loss)
    assert_close(grads, twin_grads, NORM_GRAD_ATOL, "residual block vs twin: gradients")


class BasicBlock(nn.Module):
    """torchvision's ResNet block as written there: in-place ReLU, `out += identity`, a Sequential shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:  # decided when built: traces as a constant
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


def test_torchvision_style_resnet_reads():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), BasicBlock(8, 8, 1),
                        BasicBlock(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    read = read_model(net, (10, 10, 3))
    adds = [i for i in read.spec.info if i.type == "add"]
    assert [a.inputs for a in adds] == [("bn2", "act1"), ("bn4", "bn5")]
    assert (read.paths["conv6"], read.paths["bn5"], read.paths["act5"]) == ("3.downsample.0", "3.downsample.1",
                                                                             "3.relu")
    assert len(read.notes) == 5  # one per BatchNorm2d
    read.set_weights(random_weights(read.spec, 10))
    assert_reading_matches_reference(read, images((10, 10, 3)), "torchvision-style ResNet")


# -- 3. twincnn's own twins --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", zoo.names())
def test_twincnns_own_twin_reads_back_as_its_spec(name):
    spec = zoo.load(name)
    twin = tb.build(spec, seed=0)  # the graph specs need the graph-capable TwinNet
    read = read_model(twin, spec.input_shape)
    assert read.spec == canonical(spec)
    assert read.notes == []  # KerasBatchNorm keeps the biased variance: nothing to note
    weights = random_weights(spec, 1)
    read.set_weights(weights)
    assert_close(read.get_weights(), weights, 0.0, f"zoo:{name}: weights through the read module")
    assert_close(tb.get_weights(twin, spec), weights, 0.0, f"zoo:{name}: weights as the twin sees them")
    assert_reading_matches_reference(read, images(spec.input_shape, n=2), f"zoo:{name}")


# -- 4. padding --------------------------------------------------------------------------------------------
class OneConv(nn.Module):
    """A convolution, then a head; ``pad``: F.pad's (left, right, top, bottom) before it."""

    def __init__(self, pad=None, **conv):
        super().__init__()
        self.pad = pad
        self.conv = nn.Conv2d(3, 4, **conv)
        self.fc = nn.Linear(4 * 6 * 5, 3)

    def forward(self, x):
        if self.pad is not None:  # decided when the module is built: traces as a constant
            x = F.pad(x, self.pad)
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


def conv_spec(padding, kernel_size=3, strides=2):
    return Spec((12, 10, 3), [{"type": "conv2d", "filters": 4, "kernel_size": kernel_size, "strides": strides,
                               "padding": padding, "activation": "relu"},
                              {"type": "flatten"}, {"type": "dense", "units": 3}])


def test_symmetric_padding_is_not_keras_same():
    """padding=1 on a stride-2 conv of an even image pads both sides; Keras's 'same' pads only after. Same
    output size, other numbers."""
    same = canonical(conv_spec("same"))
    read = read_model(OneConv(kernel_size=3, stride=2, padding=1), (12, 10, 3))
    assert read.spec.info[0].padding == ((1, 1), (1, 1))
    assert same.info[0].padding == ((0, 1), (0, 1))
    assert read.spec != same
    assert read.spec.output_shape == same.output_shape
    x, weights = images((12, 10, 3)), read.get_weights()
    assert np.abs(read.predict(x) - reference.forward(same, weights, x)).max() > 100 * LOGIT_ATOL
    assert_reading_matches_reference(read, x, "padding=1")


def test_explicit_pad_after_reads_as_keras_same():
    read = read_model(OneConv(pad=(0, 1, 0, 1), kernel_size=3, stride=2), (12, 10, 3))
    assert read.spec == canonical(conv_spec("same"))
    assert read.spec.info[0].padding == ((0, 1), (0, 1))  # the zero pad folded into the conv
    assert [i.type for i in read.spec.info] == ["conv2d", "activation", "flatten", "dense"]
    assert_reading_matches_reference(read, images((12, 10, 3)), "F.pad + valid conv")


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # the zero-padded copy it warns of
def test_torch_same_puts_the_odd_pixel_after():
    """PyTorch's padding='same' (stride 1) with an even kernel pads one pixel, after: Keras's 'same'."""
    class EvenKernel(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 2, padding="same")
            self.fc = nn.Linear(4 * 12 * 10, 3)

        def forward(self, x):
            return self.fc(torch.flatten(F.relu(self.conv(x)), 1))

    read = read_model(EvenKernel(), (12, 10, 3))
    assert read.spec == canonical(conv_spec("same", kernel_size=2, strides=1))
    assert read.spec.info[0].padding == ((0, 1), (0, 1))
    assert_reading_matches_reference(read, images((12, 10, 3)), "padding='same', kernel 2")


def test_count_include_pad_reads_as_a_zero_pad_then_a_pool():
    """avg_pool2d counts padded zeros by default; the spec's pools never do: a zeropad2d layer says it."""
    class Pools(nn.Module):
        def __init__(self):
            super().__init__()
            self.counted = nn.AvgPool2d(3, 2, padding=1)
            self.fc = nn.Linear(3 * 3 * 2, 2)  # 8x6 -> 4x3 -> 3x2, 3 channels

        def forward(self, x):
            x = F.avg_pool2d(self.counted(x), 2, padding=1, count_include_pad=False)
            return self.fc(x.reshape(x.shape[0], -1))

    read = read_model(Pools(), (8, 6, 3))
    assert [i.type for i in read.spec.info] == ["zeropad2d", "avgpool2d", "avgpool2d", "flatten", "dense"]
    assert read.spec.info[2].padding == ((1, 1), (1, 1))
    assert_reading_matches_reference(read, images((8, 6, 3)), "avg pools with padding")


def test_zero_pads_keep_their_sides():
    """F.pad's (left, right, top, bottom) order: a pad one conv reads folds into it, a pad a pool reads stays."""
    class Pads(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad = nn.ZeroPad2d((0, 2, 1, 0))
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 5 * 3, 3)

        def forward(self, x):
            x = self.conv(F.pad(x, (1, 0, 2, 1)))  # 8x6 -> 11x7 -> 9x5
            x = F.max_pool2d(self.pad(x), 2)  # -> 10x7 -> 5x3
            return self.fc(torch.flatten(x, 1))

    read = read_model(Pads(), (8, 6, 3))
    assert [i.type for i in read.spec.info] == ["conv2d", "zeropad2d", "maxpool2d", "flatten", "dense"]
    assert read.spec.info[0].padding == ((2, 1), (1, 0))
    assert read.spec.info[1].padding == ((1, 0), (0, 2))
    assert (read.paths["conv1"], read.paths["zpad1"]) == ("conv", "pad")
    assert_reading_matches_reference(read, images((8, 6, 3)), "zero pads")


def test_chained_zero_pads_fold_into_one_conv():
    class TwoPads(nn.Module):
        def __init__(self):
            super().__init__()
            self.outer = nn.ZeroPad2d(1)
            self.conv = nn.Conv2d(3, 2, 3)
            self.fc = nn.Linear(2 * 7 * 5, 2)  # 6x4 -> 8x6 -> 9x7 -> 7x5

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(F.pad(self.outer(x), (0, 1, 0, 1))), 1))

    read = read_model(TwoPads(), (6, 4, 3))
    assert [i.type for i in read.spec.info] == ["conv2d", "flatten", "dense"]
    assert read.spec.info[0].padding == ((1, 2), (1, 2))
    assert canonical(read.spec) == read.spec
    assert_reading_matches_reference(read, images((6, 4, 3)), "two pads")


def test_max_pool_padding_never_wins():
    """MaxPool2d's padding is -inf: with every conv output negative, a pool that padded with zeros would
    return zeros at the border."""
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.pool = nn.MaxPool2d(3, 2, padding=1)
            self.fc = nn.Linear(4 * 3 * 2, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.conv(x)), 1))  # 7x5 -> 5x3 -> 3x2

    read = read_model(Pooled(), (7, 5, 3))
    assert read.spec.info[1].padding == ((1, 1), (1, 1))
    weights = random_weights(read.spec, 4)
    weights["conv1/bias"][:] = -5.0
    read.set_weights(weights)
    assert_reading_matches_reference(read, images((7, 5, 3)), "padded max pool")


def test_twins_minus_infinity_pad_folds_into_its_max_pool():
    """twincnn's twin pads with -inf before a 'same' max pool with the odd pixel after: one spec pool again."""
    spec = Spec((7, 7, 3), [{"type": "conv2d", "filters": 4, "padding": "same", "activation": "relu"},
                            {"type": "maxpool2d", "pool_size": 2, "padding": "same"},
                            {"type": "flatten"}, {"type": "dense", "units": 3}])
    read = read_model(tb.build(spec, seed=0), spec.input_shape)
    assert read.spec == canonical(spec)
    assert read.spec.info[2].padding == ((0, 1), (0, 1))
    read.set_weights(random_weights(spec, 2))
    assert_reading_matches_reference(read, images((7, 7, 3)), "twin with a 'same' max pool")


# -- activations, concatenation, global pooling by mean ------------------------------------------------------
class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.six, self.elu, self.silu = nn.ReLU6(), nn.ELU(), nn.SiLU()
        self.gelu, self.leaky = nn.GELU(), nn.LeakyReLU(0.2, inplace=True)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = F.hardtanh(self.six(self.conv(x)), 0.0, 6.0)
        x = self.gelu(self.silu(self.elu(x)))
        x = self.leaky(F.gelu(x, approximate="tanh"))
        x = torch.tanh(x.sigmoid()).relu()
        return self.fc(torch.flatten(x, 1))


def test_activation_spellings():
    read = read_model(Activations(), (6, 6, 3))
    acts = [(i.activation, i.config.get("negative_slope")) for i in read.spec.info if i.type == "activation"]
    assert acts == [("relu6", None), ("relu6", None), ("elu", None), ("silu", None), ("gelu", None),
                    ("gelu_tanh", None), ("leaky_relu", 0.2), ("sigmoid", None), ("tanh", None), ("relu", None)]
    read.set_weights(random_weights(read.spec, 8, scale=3.0))  # large: every activation's both sides
    assert_reading_matches_reference(read, images((6, 6, 3)), "activation spellings")


class TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.left = nn.Conv2d(3, 4, 1)
        self.right = nn.Conv2d(3, 2, 3, padding=1)
        self.act = nn.ReLU(inplace=True)  # in place on left's output: activations() must keep left's own
        self.drop = nn.Dropout(0.25)
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        joined = torch.cat([self.act(self.left(x)), self.right(x)], dim=1)
        return self.fc(self.norm(self.drop(joined.mean(dim=[2, 3]))))


def test_concatenate_and_mean_pooling():
    expected = Spec((6, 5, 3), [
        {"type": "conv2d", "filters": 4, "kernel_size": 1},
        {"type": "activation", "activation": "relu"},
        {"type": "conv2d", "filters": 2, "padding": 1, "inputs": ["input"]},
        {"type": "concatenate", "inputs": ["act1", "conv2"]},
        {"type": "globalavgpool2d"},
        {"type": "dropout", "rate": 0.25},
        {"type": "layernorm", "epsilon": 1e-5},
        {"type": "dense", "units": 3},
    ])
    read = read_model(TwoBranches(), (6, 5, 3))
    assert read.spec == canonical(expected)
    read.set_weights(random_weights(read.spec, 9))
    assert_reading_matches_reference(read, images((6, 5, 3)), "two branches")


# -- 5. flatten spellings ----------------------------------------------------------------------------------
class Flattened(nn.Module):
    def __init__(self, spelling):
        super().__init__()
        self.spelling = spelling
        self.conv = nn.Conv2d(3, 4, 3)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 10 * 8, 3)

    def forward(self, x):
        x = F.relu(self.conv(x))
        if self.spelling == "view":
            x = x.view(x.size(0), -1)
        elif self.spelling == "torch.flatten":
            x = torch.flatten(x, 1)
        elif self.spelling == "reshape":
            x = x.reshape(x.shape[0], -1)
        else:
            x = self.flat(x)
        return self.fc(x)


SPELLINGS = ("view", "torch.flatten", "reshape", "nn.Flatten")


def test_flatten_spellings_read_alike():
    reads = []
    for spelling in SPELLINGS:
        torch.manual_seed(0)  # the same PyTorch weights in each
        reads.append(read_model(Flattened(spelling), (12, 10, 3)))
    first = reads[0]
    assert [i.type for i in first.spec.info] == ["conv2d", "activation", "flatten", "dense"]
    x = images((12, 10, 3))
    for spelling, read in zip(SPELLINGS, reads):
        assert read.spec == first.spec, spelling
        assert_close(read.get_weights(), first.get_weights(), 0.0, f"{spelling}: canonical weights")
        assert_reading_matches_reference(read, x, spelling)
    # the dense kernel comes back in (H, W, C) row order: its rows are not PyTorch's (C, H, W) ones
    torch_rows = first.model.module.fc.weight.detach().numpy().T
    assert not np.array_equal(first.get_weights()["fc1/kernel"], torch_rows)


# -- 6. refusals -------------------------------------------------------------------------------------------
class Head(nn.Module):
    """conv -> ``middle`` -> flatten -> Linear; ``middle`` is what a refusal test puts in the path."""

    def __init__(self, middle=None, end=None, features=4 * 4 * 4, **conv):
        super().__init__()
        self.edge = nn.Conv2d(3, 4, 3, **conv)
        self.middle, self.end = middle, end
        self.fc = nn.Linear(features, 3)

    def forward(self, x):
        x = self.edge(x)
        if self.middle is not None:
            x = self.middle(x)
        x = self.fc(torch.flatten(x, 1))
        return x if self.end is None else self.end(x)


class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.lstm = nn.LSTM(64, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.lstm(torch.flatten(self.conv(x), 1))
        return self.fc(out)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6 * 6 * 3, 3)

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.fc(torch.flatten(x, 1))


class ReluInPlaceAside(nn.Module):
    """The result of an in-place ReLU thrown away: PyTorch's later reads see it, a spec would not."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        x = self.conv(x)
        F.relu(x, inplace=True)
        return self.fc(torch.flatten(x, 1))


SHARED = nn.Conv2d(4, 4, 1)  # one module, so one set of weights, at two places

REFUSED = {
    "reflect padding": (lambda: Head(features=4 * 6 * 6, padding=1, padding_mode="reflect"),
                        r"^edge \(Conv2d\): not expressible in a twincnn spec: padding_mode 'reflect' "
                        r"\(zero padding only\)$"),
    "LSTM": (WithLSTM, r"^lstm \(LSTM\): not expressible in a twincnn spec: recurrent layers$"),
    "torch.sort": (lambda: Head(lambda x: torch.sort(x, dim=1)[0]),
                   r"^sort at test_torch_read\.py:\d+ \(torch\.sort\): not expressible"),
    "transpose": (lambda: Head(lambda x: x.transpose(2, 3)),
                  r"^transpose at test_torch_read\.py:\d+ \(Tensor\.transpose\): not expressible"),
    "softmax inside": (lambda: Head(lambda x: F.softmax(x, dim=1)),
                       r"^softmax .*\(F\.softmax\): .*softmax inside the network; .*only as the output head"),
    "softmax over the batch": (lambda: Head(end=nn.Softmax(dim=0)),
                               r"^end \(Softmax\): .*softmax over dim 0 of shape \(2, 3\); .*dim=1"),
    "sigmoid at the end": (lambda: Head(end=torch.sigmoid),
                           r"^sigmoid .*: .*must end in a Linear's logits"),
    "data-dependent if": (Branchy, r"^Branchy: forward does not trace with torch\.fx \(symbolically traced "
                                   r"variables cannot be used as inputs to control flow\)$"),
    "in-place aside": (ReluInPlaceAside, r"^relu .*\(F\.relu\): .*changes conv in place"),
    "momentum None": (lambda: Head(nn.BatchNorm2d(4, momentum=None)), r"^middle \(BatchNorm2d\): .*momentum=None"),
    "dilation with strides": (lambda: Head(features=4 * 5 * 5, dilation=2, stride=2, padding=4),
                              r"^edge \(Conv2d\): not expressible in a twincnn spec: dilation_rate"),
    "a conv used twice": (lambda: Head(nn.Sequential(nn.ReLU(), SHARED, nn.ReLU(), SHARED)),
                          r"^middle\.1 \(Conv2d\): .*used twice; a twincnn spec shares no weights"),
    "reshape to channels x pixels": (lambda: Head(lambda x: x.view(x.size(0), 4, -1)),
                                     r"^view .*\(Tensor\.view\): .*reshapes \(2, 4, 4, 4\) to \(2, 4, 16\)"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refusals_name_the_layer_in_one_line(case):
    make, pattern = REFUSED[case]
    with pytest.raises(UserError) as caught:
        read_model(make(), (6, 6, 3))
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(pattern, message), message


# -- 7. batch normalisation --------------------------------------------------------------------------------
def test_batchnorm_momentum_and_epsilon_in_the_specs_meaning():
    read = read_model(Head(nn.BatchNorm2d(4, momentum=0.1, eps=1e-4)), (6, 6, 3))
    bn = read.spec.info[1]
    assert (bn.type, bn.config["momentum"], bn.config["epsilon"]) == ("batchnorm", 0.9, 1e-4)
    assert len(read.notes) == 1
    assert read.notes[0].startswith("bn1 (middle): ") and "unbiased" in read.notes[0]


def test_batchnorm_on_flat_features_keeps_the_flatten_order():
    """BatchNorm1d between a flatten and the dense layer: its per-feature weights come back in (H, W, C)
    order, so the reference computes what the module does."""
    class FlatNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.norm = nn.BatchNorm1d(2 * 4 * 3)
            self.fc = nn.Linear(2 * 4 * 3, 3)

        def forward(self, x):
            return self.fc(self.norm(torch.flatten(self.conv(x), 1)))

    read = read_model(FlatNorm(), (6, 5, 3))
    read.set_weights(random_weights(read.spec, 2))
    assert_reading_matches_reference(read, images((6, 5, 3)), "BatchNorm1d after flatten")


def test_twincnns_own_input_suits_a_users_view_on_one_channel():
    """tb.predict hands a user's module standard NCHW strides, so its x.view(x.size(0), -1) works on 1-channel
    images (a permuted view of NHWC data counts as contiguous there, with channels-last strides)."""
    class ViewAfterConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4 * 4 * 4, 3)

        def forward(self, x):
            x = F.relu(self.conv(x))
            return self.fc(x.view(x.size(0), -1))

    assert tb.predict(ViewAfterConv(), images((6, 6, 1))).shape == (4, 3)
