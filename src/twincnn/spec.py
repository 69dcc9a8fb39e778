"""The architecture spec: the single source of truth for every twin.

A spec is plain data (an input shape and a list of layer dicts). Everything a
framework module needs -- each layer's output shape, parameter count, its name
and the canonical shape of its weights -- is computed here, without importing any framework.

Layer types, their settings (defaults in brackets) and names (numbered per type, from 1):
  - conv2d (conv1..): filters, kernel_size [3], strides [1], padding ['valid'], dilation_rate [1], groups [1],
    activation [null]. Dilation needs strides 1 (as in Keras); groups divides input channels and filters.
  - depthwiseconv2d (dw1..): kernel_size [3], depth_multiplier [1], strides [1], padding ['valid'], activation.
  - maxpool2d (pool1..), avgpool2d (avgpool1..): pool_size [2], strides [the pool size], padding ['valid'].
    'same' pools never count padded cells: a max ignores them, an average divides by the real cells only.
  - globalavgpool2d (gap1..): (H, W, C) -> (C,).
  - flatten (flatten): (H, W, C) -> (H*W*C,), in (H, W, C) order.
  - dense (fc1..): units, activation [null].
  - batchnorm (bn1..): momentum [0.99], epsilon [1e-3], over the channel axis (the last one; the features of a
    flat input). Keras's meaning: moving = momentum * moving + (1 - momentum) * batch statistic, the batch
    variance biased (divided by N). Training normalises with the batch statistics, inference with the moving ones.
  - dropout (drop1..): rate in [0, 1). Identity in inference; inverted dropout (kept values / (1 - rate)) in training.
  - layernorm (ln1..): axis [-1: the channels of each position, or the features of a flat input], epsilon [1e-3].
  - activation (act1..): activation (required), as a layer of its own.
  - zeropad2d (zpad1..): padding (required), zeros around the image.
  - add (add1..): the sum of two or more inputs of one shape. concatenate (concat1..): two or more inputs joined on
    the channel axis (images of one height and width, or flat inputs).
  Activations (conv2d, depthwiseconv2d, dense, activation): relu, relu6, sigmoid, tanh, elu (alpha 1), silu, gelu
  (exact, erf), gelu_tanh (the tanh approximation), leaky_relu (with negative_slope [0.3, as Keras's LeakyReLU
  layer]), or null.
  Padding (conv2d, depthwiseconv2d, pools, zeropad2d): 'valid', 'same', an int p (p on every side) or
  [[top, bottom], [left, right]]. 'same' is TensorFlow's: ceil(size / stride) outputs, the odd padded pixel at the
  bottom/right, over the effective kernel (k - 1) * dilation + 1. Explicit padding on a pool is not counted (a max
  ignores it, an average divides by the real cells), as with 'same'. After flatten or globalavgpool2d only dense,
  dropout, batchnorm, layernorm, activation, add and concatenate fit.

A spec is a graph: each layer reads the previous layer's output, or the layers named in its "inputs" (earlier
layers' names, or "input" for the image). The last layer is the output: a dense layer without activation (the
logits); every other layer's output must be read by some layer.

Output head ("output", top level, one of OUTPUTS; JSON leaves out the default "logits"): "softmax" or
"log_softmax" over the logits, as a model that ends in one returns. Every twin computes, compares and trains on
the logits (the cross-entropy of the logits is the loss of either head's output); the head is applied where the
model's own output is asked for (a saved Keras model ends in it).

Canonical weight layout (what ``get_weights``/``set_weights`` exchange):
  - conv kernel ``(kh, kw, in / groups, out)`` (HWIO), bias ``(out,)``;
  - depthwise kernel ``(kh, kw, in, multiplier)``, bias ``(in * multiplier,)``; output channel ``c * multiplier + m``;
  - dense kernel ``(in, out)``, bias ``(out,)``; a dense layer that follows a
    Flatten reads its input in (H, W, C) order, i.e. channels-last;
  - batchnorm ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``, each ``(C,)`` (only gamma and beta are
    trainable); layernorm ``gamma``, ``beta`` ``(C,)``. Between a flatten and the next dense layer these are
    per feature, in the same (H, W, C) order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

ACTIVATIONS = (None, "relu", "relu6", "sigmoid", "tanh", "elu", "silu", "gelu", "gelu_tanh", "leaky_relu")
PADDINGS = ("valid", "same")
LAYER_TYPES = ("conv2d", "depthwiseconv2d", "maxpool2d", "avgpool2d", "globalavgpool2d", "flatten", "dense",
               "batchnorm", "dropout", "layernorm", "activation", "zeropad2d", "add", "concatenate")
NAME_PREFIXES = {"conv2d": "conv", "depthwiseconv2d": "dw", "maxpool2d": "pool", "avgpool2d": "avgpool",
                 "globalavgpool2d": "gap", "flatten": "flatten", "dense": "fc", "batchnorm": "bn", "dropout": "drop",
                 "layernorm": "ln", "activation": "act", "zeropad2d": "zpad", "add": "add", "concatenate": "concat"}
INPUT = "input"  # the name by which "inputs" refers to the image
SPEC_KEYS = ("input_shape", "layers", "output", "description")  # a spec's top-level keys (description: free text)
OUTPUTS = ("logits", "softmax", "log_softmax")  # the output heads: what the model returns from its logits
MERGES = ("add", "concatenate")  # the types that read two or more inputs
# Each type's settings besides "type" and "activation"
SETTINGS = {
    "conv2d": {"filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "use_bias"},
    "depthwiseconv2d": {"kernel_size", "depth_multiplier", "strides", "padding", "use_bias"},
    "maxpool2d": {"pool_size", "strides", "padding"},
    "avgpool2d": {"pool_size", "strides", "padding"},
    "globalavgpool2d": set(),
    "flatten": set(),
    "dense": {"units", "use_bias"},
    "batchnorm": {"momentum", "epsilon"},
    "dropout": {"rate"},
    "layernorm": {"axis", "epsilon"},
    "activation": set(),
    "zeropad2d": {"padding"},
    "add": set(),
    "concatenate": set(),
}
ACTIVATED = ("conv2d", "depthwiseconv2d", "dense", "activation")  # the types that take an activation
IMAGE_LAYERS = ("conv2d", "depthwiseconv2d", "maxpool2d", "avgpool2d", "globalavgpool2d", "zeropad2d")  # (H, W, C)
PER_FEATURE = ("batchnorm", "layernorm")  # weights per channel, or per feature of a flat input
NON_TRAINABLE = ("moving_mean", "moving_variance")  # weights that training sets, but not by gradient
# Settings a spec may leave out: describe() omits them at these values
_QUIET_DEFAULTS = {"dilation_rate": (1, 1), "groups": 1, "use_bias": True}


class SpecError(UserError, ValueError):
    """A spec that cannot describe a working network."""


def _pair(value, what, where):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise SpecError(f"{where}: {what} must be an int or a pair of ints, got {value!r}")
    if min(value) < 1:
        raise SpecError(f"{where}: {what} must be positive, got {value!r}")
    return tuple(value)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding (before, after): the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class LayerInfo:
    """One layer as the spec's arithmetic sees it."""

    index: int
    type: str
    name: str  # conv1, pool1, flatten, fc1, bn1 ... (the module docstring lists the prefixes)
    config: dict
    input_shape: tuple
    output_shape: tuple  # without the batch dimension, channels-last
    params: int
    weight_shapes: dict = field(default_factory=dict)  # canonical: {"kernel": ..., "bias": ...}
    padding: tuple | None = None  # conv and pools: ((top, bottom), (left, right)) explicit padding
    # dense right after Flatten, or a batchnorm/layernorm between them: the (H, W, C) order of its features
    flatten_from: tuple | None = None
    inputs: tuple = ()  # the names of the layers it reads (INPUT: the image), in order
    input_shapes: tuple = ()  # their output shapes, in the same order (input_shape is the first)

    @property
    def activation(self):
        return self.config.get("activation")


@dataclass(frozen=True)
class Spec:
    """An image classifier: input (H, W, C), a list of layer dicts and the output head over its logits."""

    input_shape: tuple
    layers: tuple = ()
    output: str = "logits"

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise SpecError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if not isinstance(self.input_shape, (tuple, list)):
            raise SpecError(f"input_shape must be a list of three positive ints (H, W, C), got {self.input_shape!r}")
        if not isinstance(self.layers, (tuple, list)):
            raise SpecError(f"layers must be a list of layer objects, got {self.layers!r}")
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, dict):
                raise SpecError(f"layer {index}: must be an object like {{\"type\": \"dense\", \"units\": 10}}, "
                                f"got {layer!r}")
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "layers", tuple(dict(layer) for layer in self.layers))
        object.__setattr__(self, "_info", _analyse(self))

    # Equal when they describe the same network: `"kernel_size": 3` and `[3, 3]`, an omitted default and
    # the default spelled out. The normalised configs hold every setting that changes the network.
    def _key(self):
        return (self.input_shape, tuple((i.inputs, tuple(sorted(i.config.items()))) for i in self._info),
                self.output)

    def __eq__(self, other):
        return self._key() == other._key() if isinstance(other, Spec) else NotImplemented

    def __hash__(self):
        return hash(self._key())

    # -- derived views -------------------------------------------------------
    @property
    def info(self) -> tuple[LayerInfo, ...]:
        return self._info

    @property
    def param_layers(self) -> tuple[LayerInfo, ...]:
        return tuple(i for i in self._info if i.weight_shapes)

    @property
    def total_params(self) -> int:
        return sum(i.params for i in self._info)

    @property
    def output_shape(self) -> tuple:
        return self._info[-1].output_shape

    @property
    def num_classes(self) -> int:
        return self.output_shape[0]

    def weight_shapes(self) -> dict[str, tuple]:
        """Canonical weight names ("conv1/kernel") and shapes, in layer order."""
        return {f"{i.name}/{k}": s for i in self.param_layers for k, s in i.weight_shapes.items()}

    def trainable_weight_shapes(self) -> dict[str, tuple]:
        """The weights gradients are taken for: all but BatchNorm's moving statistics."""
        return {f"{i.name}/{k}": s for i in self.param_layers for k, s in i.weight_shapes.items()
                if k not in NON_TRAINABLE}

    def forward_flops(self) -> int:
        """Multiply-adds x 2 of one image's forward pass (convolutions and dense layers only)."""
        return sum(self.layer_flops())

    def layer_flops(self) -> list[int]:
        """Multiply-adds x 2 of each layer's forward pass for one image; 0 for layers without weights."""
        flops = []
        for i in self._info:
            if i.type in ("conv2d", "depthwiseconv2d"):  # conv: cin per group; depthwise: cout = multiplier
                kh, kw, cin, cout = i.weight_shapes["kernel"]
                h, w, c = i.output_shape
                flops.append(2 * h * w * c * kh * kw * (cin if i.type == "conv2d" else 1))
            elif i.type == "dense":
                n_in, n_out = i.weight_shapes["kernel"]
                flops.append(2 * n_in * n_out)
            else:
                flops.append(0)
        return flops

    # -- plain data in and out ---------------------------------------------
    def to_dict(self) -> dict:
        """Plain data; "output" is left out where it is "logits"."""
        head = {} if self.output == "logits" else {"output": self.output}
        return {"input_shape": list(self.input_shape), "layers": [dict(layer) for layer in self.layers], **head}

    def to_json(self) -> str:
        """The spec as a JSON file holds it: one layer a line, so that a long network still reads as a list."""
        data = self.to_dict()
        layers = ",\n".join(f"  {json.dumps(layer)}" for layer in data.pop("layers"))
        rest = "".join(f",\n \"{key}\": {json.dumps(value)}" for key, value in data.items() if key != "input_shape")
        return f'{{"input_shape": {json.dumps(data["input_shape"])}{rest},\n "layers": [\n{layers}\n ]\n}}\n'

    @classmethod
    def from_dict(cls, data: dict, input_shape: tuple | None = None) -> "Spec":
        """A spec from plain data; ``input_shape`` (the data's images) stands in where it names none."""
        if not isinstance(data, dict) or "layers" not in data:
            raise SpecError("a spec is a JSON object with 'input_shape' and 'layers'")
        unknown = sorted(set(data) - set(SPEC_KEYS))
        if unknown:
            raise SpecError(f"unknown key(s) {unknown}; a spec holds {', '.join(SPEC_KEYS)}")
        if "input_shape" not in data and input_shape is None:
            raise SpecError("the spec names no input_shape; add \"input_shape\": [H, W, C]")
        return cls(input_shape=data.get("input_shape", input_shape), layers=data["layers"],
                   output=data.get("output", "logits"))

    @classmethod
    def load(cls, path, input_shape: tuple | None = None) -> "Spec":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"{path}: no such spec file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: not a JSON spec ({exc})") from None
        try:
            return cls.from_dict(data, input_shape)
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None

    @property
    def is_sequential(self) -> bool:
        """Each layer reads only the one before it (the image, for the first)."""
        return all(i.inputs == ((self._info[n - 1].name if n else INPUT),) for n, i in enumerate(self._info))

    def describe(self) -> str:
        parts = []
        for n, i in enumerate(self._info):
            cfg = {k: v for k, v in i.config.items() if k != "type" and _QUIET_DEFAULTS.get(k, ()) != v}
            if i.inputs != ((self._info[n - 1].name if n else INPUT),):
                cfg = {"inputs": list(i.inputs), **cfg}
            parts.append(f"{i.name}({', '.join(f'{k}={v}' for k, v in cfg.items())})")
        head = "" if self.output == "logits" else f" -> {self.output}"
        return f"input{self.input_shape} -> " + " -> ".join(parts) + head


@dataclass(frozen=True)
class _Tensor:
    """What the analysis knows of one layer's output."""

    shape: tuple
    flatten_from: tuple | None = None  # the (H, W, C) a flatten made flat, until a dense layer mixes the features
    flat_by: str | None = None  # the layer type that made it flat, for the error when an image layer reads it


def _analyse(spec: Spec) -> tuple[LayerInfo, ...]:
    shape = spec.input_shape
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise SpecError(f"input_shape must be three positive ints (H, W, C), got {shape!r}")
    if not spec.layers:
        raise SpecError("a spec needs at least one layer")
    counts = dict.fromkeys(LAYER_TYPES, 0)
    out = []
    tensors = {INPUT: _Tensor(tuple(shape))}
    read = set()  # the names some layer reads
    for index, layer in enumerate(spec.layers):
        kind = layer.get("type")
        where = f"layer {index} ({kind})"
        if kind not in LAYER_TYPES:
            raise SpecError(f"layer {index}: unknown type {kind!r}; supported: {', '.join(LAYER_TYPES)}")
        counts[kind] += 1
        # the first flatten keeps the plain name it has always had; a second (in another branch) is numbered
        name = ("flatten" if counts[kind] == 1 else f"flatten{counts[kind]}") if kind == "flatten" \
            else f"{NAME_PREFIXES[kind]}{counts[kind]}"
        allowed = {"type", "activation", "inputs"} | SETTINGS[kind]
        # negative_slope belongs to leaky_relu: checked with the activation below, not listed as a setting
        unknown = set(layer) - allowed - ({"negative_slope"} if kind in ACTIVATED else set())
        if unknown:
            raise SpecError(f"{where}: unknown setting(s) {sorted(unknown)}; allowed: {sorted(allowed - {'type'})}")
        activation = layer.get("activation")
        if activation not in ACTIVATIONS:
            names = ", ".join(a for a in ACTIVATIONS if a)
            raise SpecError(f"{where}: activation must be one of {names} or null, got {activation!r}")
        if activation and kind not in ACTIVATED:
            raise SpecError(f"{where}: takes no activation, got {activation!r}")
        if kind == "activation" and not activation:
            names = ", ".join(a for a in ACTIVATIONS if a)
            raise SpecError(f"{where}: needs an activation, one of {names}")
        if "negative_slope" in layer and activation != "leaky_relu":
            raise SpecError(f"{where}: negative_slope is allowed only with activation 'leaky_relu', "
                            f"got activation {activation!r}")
        inputs = _inputs(layer, kind, where, out[-1].name if out else INPUT, tensors)
        read.update(inputs)
        sources = [tensors[n] for n in inputs]
        source = _merged(kind, inputs, sources, where)
        shape = source.shape
        if kind in IMAGE_LAYERS and len(shape) != 3:
            raise SpecError(f"{where}: needs an image input (H, W, C), got {shape} after {source.flat_by}")
        config, shape, weights, padding = _LAYERS[kind](layer, shape, where)
        config = {"type": kind, **config}
        if kind in ACTIVATED:
            config["activation"] = activation
            if activation == "leaky_relu":
                config["negative_slope"] = _number(layer.get("negative_slope", 0.3), "negative_slope", where,
                                                   "a number >= 0", lambda v: v >= 0)
        flatten_from = None
        if kind in ("flatten", "globalavgpool2d"):
            tensors[name] = _Tensor(shape, source.shape if kind == "flatten" else None,
                                    "Flatten" if kind == "flatten" else "globalavgpool2d")
        elif kind == "dense":
            flatten_from = source.flatten_from  # None on an image input: only flatten sets it
            tensors[name] = _Tensor(shape, None, source.flat_by)
        else:  # per-feature layers keep the features where they are: a later dense layer still needs the order
            flatten_from = source.flatten_from if kind in PER_FEATURE else None
            tensors[name] = _Tensor(shape, source.flatten_from, source.flat_by)
        params = sum(math.prod(s) for s in weights.values())
        out.append(LayerInfo(index, kind, name, config, sources[0].shape, shape, params, weights, padding,
                             flatten_from, tuple(inputs), tuple(t.shape for t in sources)))
    unread = [i.name for i in out[:-1] if i.name not in read]
    if unread:
        raise SpecError(f"the output of {', '.join(unread)} is never read: every layer but the last (the output) "
                        f"must be one of some later layer's inputs")
    if len(shape) != 1:
        raise SpecError(f"the last layer must give class scores (units,), got {shape}; end with flatten + dense")
    if out[-1].type != "dense" or out[-1].activation is not None:
        raise SpecError("the last layer must be a dense layer without activation (it outputs logits)")
    return tuple(out)


def _inputs(layer, kind, where, previous, tensors) -> list[str]:
    """The names a layer reads: its "inputs", or the previous layer's output."""
    inputs = layer.get("inputs", [previous])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(n, str) for n in inputs):
        raise SpecError(f"{where}: inputs must be a list of earlier layers' names, got {inputs!r}")
    for n in inputs:
        if n not in tensors:
            raise SpecError(f"{where}: input {n!r} is not an earlier layer; earlier: {', '.join(tensors)}")
    if len(set(inputs)) != len(inputs):
        raise SpecError(f"{where}: inputs {list(inputs)} name one layer twice")
    wanted = "two or more" if kind in MERGES else "one"
    if (len(inputs) >= 2) != (kind in MERGES) or not inputs:
        raise SpecError(f"{where}: reads {wanted} input(s), got {list(inputs)}")
    return list(inputs)


def _merged(kind, inputs, sources, where) -> _Tensor:
    """The tensor a layer sees: its one input, or what add/concatenate make of theirs."""
    if kind not in MERGES:
        return sources[0]
    shapes = ", ".join(f"{n} {t.shape}" for n, t in zip(inputs, sources))
    if len({len(t.shape) for t in sources}) != 1:
        raise SpecError(f"{where}: cannot {'add' if kind == 'add' else 'join'} images and flat inputs: {shapes}")
    if kind == "add":
        if len({t.shape for t in sources}) != 1:
            raise SpecError(f"{where}: add needs inputs of one shape, got {shapes}")
        if len({t.flatten_from for t in sources}) != 1:
            raise SpecError(f"{where}: adds features flattened from different shapes ({shapes}); "
                            f"put a dense layer before the add")
        return sources[0]
    if len({t.shape[:-1] for t in sources}) != 1:
        raise SpecError(f"{where}: concatenate joins channels of images of one height and width, got {shapes}")
    if any(t.flatten_from is not None for t in sources):  # a flat concatenation of flattened images: no layout
        raise SpecError(f"{where}: joins flattened features ({shapes}); put a dense layer after each flatten, "
                        f"or concatenate the images before one flatten")
    # every source has the same leading dimensions (checked above): sources[0]'s stand for all
    joined = (*sources[0].shape[:-1], sum(t.shape[-1] for t in sources))
    return _Tensor(joined, None, sources[0].flat_by)


def _number(value, what, where, meaning, ok) -> float:
    """A finite int or float for which ok(value) holds, as a float; SpecError saying ``meaning`` otherwise."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not ok(value)):
        raise SpecError(f"{where}: {what} must be {meaning}, got {value!r}")
    return float(value)


def _positive_int(layer, key, where, default=None) -> int:
    value = layer.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{where}: {key} must be a positive int, got {value!r}")
    return value


def _explicit(value):
    """((top, bottom), (left, right)) from an int or [[top, bottom], [left, right]] of ints >= 0; None if neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = ((value, value), (value, value))
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for p in value for v in p)):
        return tuple(tuple(p) for p in value)
    return None


def _padding_mode(layer, where):
    """'valid', 'same' or explicit ((top, bottom), (left, right)); explicit zeros are 'valid'."""
    mode = layer.get("padding", "valid")
    if mode in PADDINGS:
        return mode
    explicit = _explicit(mode)
    if explicit is None:
        raise SpecError(f"{where}: padding must be 'valid', 'same', an int >= 0 or [[top, bottom], [left, right]], "
                        f"got {mode!r}")
    return "valid" if explicit == ((0, 0), (0, 0)) else explicit


def _window(shape, window, strides, mode, where, what="kernel"):
    """(output height, width, explicit padding) of a sliding window; ``window`` is the effective size."""
    h, w = shape[0], shape[1]
    if mode == "same":  # TensorFlow's rule: ceil(size / stride) outputs, the odd padded pixel after
        padding = (same_padding(h, window[0], strides[0]), same_padding(w, window[1], strides[1]))
    elif mode == "valid":
        padding = ((0, 0), (0, 0))
    else:
        padding = mode
    oh = (h + sum(padding[0]) - window[0]) // strides[0] + 1
    ow = (w + sum(padding[1]) - window[1]) // strides[1] + 1
    if oh < 1 or ow < 1:  # the window is larger than the (padded) input
        raise SpecError(f"{where}: {what} {window} does not fit input {h}x{w}: output would be empty")
    return oh, ow, padding


def _conv2d(layer, shape, where):
    filters = _positive_int(layer, "filters", where)
    k = _pair(layer.get("kernel_size", 3), "kernel_size", where)
    s = _pair(layer.get("strides", 1), "strides", where)
    mode = _padding_mode(layer, where)
    d = _pair(layer.get("dilation_rate", 1), "dilation_rate", where)
    groups = _positive_int(layer, "groups", where, 1)
    c = shape[2]
    if d != (1, 1) and s != (1, 1):
        raise SpecError(f"{where}: dilation_rate {d} with strides {s}: Keras allows dilation only with strides 1; "
                        f"use one or the other")
    if c % groups or filters % groups:
        raise SpecError(f"{where}: groups={groups} must divide the input channels ({c}) and filters ({filters})")
    effective = tuple((k[i] - 1) * d[i] + 1 for i in range(2))  # the dilated kernel's extent
    oh, ow, padding = _window(shape, effective, s, mode, where, "kernel" if d == (1, 1) else "dilated kernel")
    config = dict(filters=filters, kernel_size=k, strides=s, padding=mode, dilation_rate=d, groups=groups)
    config, weights = _bias(layer, config, {"kernel": (k[0], k[1], c // groups, filters)}, filters, where)
    return config, (oh, ow, filters), weights, padding


def _bias(layer, config, weights, units, where):
    """The config with use_bias, and the weights with a bias (units,) unless use_bias is false."""
    use_bias = layer.get("use_bias", True)
    if not isinstance(use_bias, bool):
        raise SpecError(f"{where}: use_bias must be true or false, got {use_bias!r}")
    return {**config, "use_bias": use_bias}, {**weights, "bias": (units,)} if use_bias else weights


def _depthwiseconv2d(layer, shape, where):
    k = _pair(layer.get("kernel_size", 3), "kernel_size", where)
    multiplier = _positive_int(layer, "depth_multiplier", where, 1)
    s = _pair(layer.get("strides", 1), "strides", where)
    mode = _padding_mode(layer, where)
    oh, ow, padding = _window(shape, k, s, mode, where)
    c = shape[2]
    config = dict(kernel_size=k, depth_multiplier=multiplier, strides=s, padding=mode)
    config, weights = _bias(layer, config, {"kernel": (k[0], k[1], c, multiplier)}, c * multiplier, where)
    return config, (oh, ow, c * multiplier), weights, padding


def _pool2d(layer, shape, where):
    p = _pair(layer.get("pool_size", 2), "pool_size", where)
    strides = layer.get("strides")  # None (or absent): the pool size, as in Keras; 0 is an error
    s = p if strides is None else _pair(strides, "strides", where)
    mode = _padding_mode(layer, where)
    oh, ow, padding = _window(shape, p, s, mode, where, what="pool")
    return dict(pool_size=p, strides=s, padding=mode), (oh, ow, shape[2]), {}, padding


def _globalavgpool2d(layer, shape, where):
    return {}, (shape[2],), {}, None


def _flatten(layer, shape, where):
    if len(shape) != 3:
        raise SpecError(f"{where}: input is already flat")
    return {}, (math.prod(shape),), {}, None


def _dense(layer, shape, where):
    units = _positive_int(layer, "units", where)
    if len(shape) != 1:
        raise SpecError(f"{where}: Dense needs a flat input, got {shape}; add a flatten layer before it")
    config, weights = _bias(layer, dict(units=units), {"kernel": (shape[0], units)}, units, where)
    return config, (units,), weights, None


def _epsilon(layer, where) -> float:
    return _number(layer.get("epsilon", 1e-3), "epsilon", where, "a positive number", lambda v: v > 0)


def _batchnorm(layer, shape, where):
    momentum = _number(layer.get("momentum", 0.99), "momentum", where, "a number in [0, 1)", lambda v: 0 <= v < 1)
    c = (shape[-1],)
    weights = {"gamma": c, "beta": c, "moving_mean": c, "moving_variance": c}
    return dict(momentum=momentum, epsilon=_epsilon(layer, where)), shape, weights, None


def _dropout(layer, shape, where):
    if "rate" not in layer:
        raise SpecError(f"{where}: needs a rate in [0, 1), e.g. \"rate\": 0.5")
    return dict(rate=_number(layer["rate"], "rate", where, "a number in [0, 1)", lambda v: 0 <= v < 1)), shape, {}, None


def _layernorm(layer, shape, where):
    axis = layer.get("axis", -1)
    if axis != -1 or isinstance(axis, bool):
        raise SpecError(f"{where}: axis must be -1 (the channel axis, or the features of a flat input), got {axis!r}")
    c = (shape[-1],)
    return dict(axis=-1, epsilon=_epsilon(layer, where)), shape, {"gamma": c, "beta": c}, None


def _passthrough(layer, shape, where):  # activation, add, concatenate: the (merged) input's shape
    return {}, shape, {}, None


def _zeropad2d(layer, shape, where):
    if "padding" not in layer:
        raise SpecError(f"{where}: needs a padding, an int or [[top, bottom], [left, right]]")
    padding = _explicit(layer["padding"])
    if padding is None:
        raise SpecError(f"{where}: padding must be an int >= 0 or [[top, bottom], [left, right]], "
                        f"got {layer['padding']!r}")
    (top, bottom), (left, right) = padding
    return dict(padding=padding), (shape[0] + top + bottom, shape[1] + left + right, shape[2]), {}, padding


# type -> (layer dict, input shape, where) -> (config without type/activation, output shape, weights, padding)
_LAYERS = {"conv2d": _conv2d, "depthwiseconv2d": _depthwiseconv2d, "maxpool2d": _pool2d, "avgpool2d": _pool2d,
           "globalavgpool2d": _globalavgpool2d, "flatten": _flatten, "dense": _dense, "batchnorm": _batchnorm,
           "dropout": _dropout, "layernorm": _layernorm, "activation": _passthrough, "zeropad2d": _zeropad2d,
           "add": _passthrough, "concatenate": _passthrough}


WINDOWED = ("conv2d", "depthwiseconv2d", "maxpool2d", "avgpool2d")  # the types with a padding
_TAKES_ZEROS = ("conv2d", "depthwiseconv2d", "zeropad2d")  # zero padding before them is part of their own


def real_cells(info: LayerInfo) -> tuple[list[int], list[int]]:
    """A padded pool's real (unpadded) cells per window, along the rows and along the columns: a window's count
    is the product of its row's and its column's. What an average that never counts padding divides by."""
    counts = []
    # [:2]: rows and columns; zip would stop there anyway, as pool_size, strides and padding have two entries
    for size, pool, stride, (before, _), out in zip(info.input_shape[:2], info.config["pool_size"],
                                                  info.config["strides"], info.padding, info.output_shape[:2]):
        starts = [i * stride - before for i in range(out)]
        counts.append([min(start + pool, size) - max(start, 0) for start in starts])
    return counts[0], counts[1]


def canonical(spec: Spec) -> Spec:
    """The same network in one spelling, so that two readings of one architecture compare equal: every
    activation a layer of its own, every padding explicit ('valid' for none), and a zeropad2d read by one
    convolution or zeropad2d alone folded into that layer's padding (zeros either way). Weighted layers keep their
    names (conv1, dw1, fc1 ...), so canonical weights move between the two unchanged."""
    readers = {}
    for info in spec.info:
        for name in info.inputs:
            readers.setdefault(name, []).append(info)
    layers, source = [], {INPUT: INPUT}  # source: old layer name -> the index in ``layers`` giving its output
    folded = {}  # a folded zeropad2d's name -> (its padding, its input)
    for info in spec.info:
        cfg = {k: v for k, v in info.config.items() if k not in ("activation", "negative_slope")}
        inputs, padding = list(info.inputs), info.padding
        if info.type in _TAKES_ZEROS and inputs[0] in folded:  # the zeros of the pad before it become its own
            outer, inputs = folded[inputs[0]][0], [folded[inputs[0]][1]]
            padding = tuple(tuple(a + b for a, b in zip(p, q)) for p, q in zip(outer, padding))
        if info.type == "zeropad2d" and len(readers[info.name]) == 1 and readers[info.name][0].type in _TAKES_ZEROS:
            folded[info.name] = (padding, inputs[0])
            continue
        if info.type in WINDOWED or info.type == "zeropad2d":
            cfg["padding"] = "valid" if padding == ((0, 0), (0, 0)) else [list(p) for p in padding]
        layers.append({**cfg, "inputs": [source[n] for n in inputs]})
        source[info.name] = len(layers) - 1
        if info.activation and info.type != "activation":
            if info.type in ACTIVATED:
                layers[-1]["activation"] = None
            act = {"type": "activation", "activation": info.activation, "inputs": [len(layers) - 1]}
            if "negative_slope" in info.config:
                act["negative_slope"] = info.config["negative_slope"]
            layers.append(act)
            source[info.name] = len(layers) - 1
        elif info.type == "activation":
            layers[-1].update(activation=info.activation, **{k: v for k, v in info.config.items()
                                                             if k == "negative_slope"})
    names = _names(layer["type"] for layer in layers)
    for n, layer in enumerate(layers):
        refs = [INPUT if r == INPUT else names[r] for r in layer.pop("inputs")]
        if refs != [names[n - 1] if n else INPUT]:
            layer["inputs"] = refs
    return Spec(spec.input_shape, tuple(layers), spec.output)


def _names(types) -> list[str]:
    """The spec's names for layers of these types, in this order (the rule _analyse follows)."""
    counts, names = {}, []
    for kind in types:
        counts[kind] = counts.get(kind, 0) + 1
        names.append(("flatten" if counts[kind] == 1 else f"flatten{counts[kind]}") if kind == "flatten"
                     else f"{NAME_PREFIXES[kind]}{counts[kind]}")
    return names


def conv(filters, kernel_size=3, strides=1, padding="valid", activation="relu"):
    return {"type": "conv2d", "filters": filters, "kernel_size": kernel_size, "strides": strides,
            "padding": padding, "activation": activation}


def pool(pool_size=2, strides=None):
    return {"type": "maxpool2d", "pool_size": pool_size, "strides": strides}


def dense(units, activation=None):
    return {"type": "dense", "units": units, "activation": activation}


def depthwise(kernel_size=3, depth_multiplier=1, strides=1, padding="valid", activation=None):
    return {"type": "depthwiseconv2d", "kernel_size": kernel_size, "depth_multiplier": depth_multiplier,
            "strides": strides, "padding": padding, "activation": activation}


def avgpool(pool_size=2, strides=None, padding="valid"):
    return {"type": "avgpool2d", "pool_size": pool_size, "strides": strides, "padding": padding}


def batchnorm(momentum=0.99, epsilon=1e-3):
    return {"type": "batchnorm", "momentum": momentum, "epsilon": epsilon}


def dropout(rate):
    return {"type": "dropout", "rate": rate}


def layernorm(epsilon=1e-3):
    return {"type": "layernorm", "axis": -1, "epsilon": epsilon}


def activation(name, inputs=None):
    return {"type": "activation", "activation": name, **({"inputs": inputs} if inputs else {})}


def add(*inputs):
    return {"type": "add", "inputs": list(inputs)}


def concatenate(*inputs):
    return {"type": "concatenate", "inputs": list(inputs)}


def zeropad(padding):
    return {"type": "zeropad2d", "padding": padding}


FLATTEN = {"type": "flatten"}
GLOBAL_AVG_POOL = {"type": "globalavgpool2d"}

#: The notebook's CNN: 90,978 parameters.
DEFAULT_SPEC = Spec(
    input_shape=(28, 28, 1),
    layers=(conv(28), pool(), conv(64), pool(), conv(64), FLATTEN, dense(64, "relu"), dense(10)),
)


def default_spec_for(input_shape: tuple, num_classes: int) -> Spec:
    """The notebook's CNN for images of ``input_shape`` (H, W, C) in ``num_classes`` classes; SpecError naming
    the smallest image it takes where the images are too small for its three valid convolutions and two pools."""
    layers = (*DEFAULT_SPEC.layers[:-1], dense(num_classes))
    try:
        return Spec(input_shape=tuple(input_shape), layers=layers)
    except SpecError:
        h, w = input_shape[:2]
        if h >= DEFAULT_MIN_SIZE[0] and w >= DEFAULT_MIN_SIZE[1]:  # too small is the only way it fails on an image
            raise
        raise SpecError(f"images of {h}x{w} are too small for the default CNN (it takes at least "
                        f"{DEFAULT_MIN_SIZE[0]}x{DEFAULT_MIN_SIZE[1]}); give a network that fits them with --spec or "
                        f"--model") from None


# conv 3 (valid), pool 2, conv 3, pool 2, conv 3: 18 -> 16 -> 8 -> 6 -> 3 -> 1
DEFAULT_MIN_SIZE = (18, 18)
