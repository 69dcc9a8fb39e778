"""The architecture spec: the single source of truth for every twin.

A spec is plain data (an input shape and a list of layer dicts). Everything a
framework module needs -- each layer's output shape, parameter count, its name
(conv1, fc1, ...) and the canonical shape of its weights -- is computed here,
without importing any framework.

Canonical weight layout (what ``get_weights``/``set_weights`` exchange):
  - conv kernel ``(kh, kw, in, out)`` (HWIO), bias ``(out,)``;
  - dense kernel ``(in, out)``, bias ``(out,)``; a dense layer that follows a
    Flatten reads its input in (H, W, C) order, i.e. channels-last.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

ACTIVATIONS = (None, "relu")
PADDINGS = ("valid", "same")
LAYER_TYPES = ("conv2d", "maxpool2d", "flatten", "dense")


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
    name: str  # conv1, pool1, flatten, fc1 ...
    config: dict
    input_shape: tuple
    output_shape: tuple  # without the batch dimension, channels-last
    params: int
    weight_shapes: dict = field(default_factory=dict)  # canonical: {"kernel": ..., "bias": ...}
    padding: tuple | None = None  # conv: ((top, bottom), (left, right)) explicit zero padding
    flatten_from: tuple | None = None  # dense right after Flatten: the (H, W, C) it flattens

    @property
    def activation(self):
        return self.config.get("activation")


@dataclass(frozen=True)
class Spec:
    """An image classifier: input (H, W, C) and a list of layer dicts."""

    input_shape: tuple = (28, 28, 1)
    layers: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "layers", tuple(dict(layer) for layer in self.layers))
        object.__setattr__(self, "_info", _analyse(self))

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

    def forward_flops(self) -> int:
        """Multiply-adds x 2 of one image's forward pass (conv and dense only)."""
        flops = 0
        for i in self._info:
            if i.type == "conv2d":
                kh, kw, cin, cout = i.weight_shapes["kernel"]
                h, w, _ = i.output_shape
                flops += 2 * h * w * cout * kh * kw * cin
            elif i.type == "dense":
                n_in, n_out = i.weight_shapes["kernel"]
                flops += 2 * n_in * n_out
        return flops

    # -- plain data in and out ---------------------------------------------
    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "layers": [dict(layer) for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: dict) -> "Spec":
        if not isinstance(data, dict) or "layers" not in data:
            raise SpecError("a spec is a JSON object with 'input_shape' and 'layers'")
        return cls(input_shape=tuple(data.get("input_shape", (28, 28, 1))), layers=tuple(data["layers"]))

    @classmethod
    def load(cls, path) -> "Spec":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"{path}: no such spec file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: not a JSON spec ({exc})") from None
        try:
            return cls.from_dict(data)
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None

    def describe(self) -> str:
        parts = []
        for i in self._info:
            cfg = {k: v for k, v in i.config.items() if k != "type"}
            parts.append(f"{i.name}({', '.join(f'{k}={v}' for k, v in cfg.items())})")
        return f"input{self.input_shape} -> " + " -> ".join(parts)


def _analyse(spec: Spec) -> tuple[LayerInfo, ...]:
    shape = spec.input_shape
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise SpecError(f"input_shape must be three positive ints (H, W, C), got {shape!r}")
    if not spec.layers:
        raise SpecError("a spec needs at least one layer")
    counts = {"conv2d": 0, "maxpool2d": 0, "flatten": 0, "dense": 0}
    prefix = {"conv2d": "conv", "maxpool2d": "pool", "flatten": "flatten", "dense": "fc"}
    out, pending_flatten = [], None
    for index, layer in enumerate(spec.layers):
        kind = layer.get("type")
        where = f"layer {index} ({kind})"
        if kind not in LAYER_TYPES:
            raise SpecError(f"layer {index}: unknown type {kind!r}; supported: {', '.join(LAYER_TYPES)}")
        counts[kind] += 1
        name = prefix[kind] + (str(counts[kind]) if kind != "flatten" or counts[kind] > 1 else "")
        allowed = {"type", "activation"} | {
            "conv2d": {"filters", "kernel_size", "strides", "padding"},
            "maxpool2d": {"pool_size", "strides"},
            "flatten": set(),
            "dense": {"units"},
        }[kind]
        unknown = set(layer) - allowed
        if unknown:
            raise SpecError(f"{where}: unknown setting(s) {sorted(unknown)}; allowed: {sorted(allowed - {'type'})}")
        activation = layer.get("activation")
        if activation not in ACTIVATIONS or (activation and kind in ("maxpool2d", "flatten")):
            raise SpecError(f"{where}: activation must be 'relu' or null, got {activation!r}")
        config = {"type": kind}
        weights, padding, flatten_from, params = {}, None, None, 0
        in_shape = shape
        if kind in ("conv2d", "maxpool2d") and len(shape) != 3:
            raise SpecError(f"{where}: needs an image input (H, W, C), got {shape} after Flatten")
        if kind == "conv2d":
            filters = layer.get("filters")
            if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
                raise SpecError(f"{where}: filters must be a positive int, got {filters!r}")
            k = _pair(layer.get("kernel_size", 3), "kernel_size", where)
            s = _pair(layer.get("strides", 1), "strides", where)
            pad_mode = layer.get("padding", "valid")
            if pad_mode not in PADDINGS:
                raise SpecError(f"{where}: padding must be 'valid' or 'same', got {pad_mode!r}")
            h, w, c = shape
            if pad_mode == "same":
                padding = (same_padding(h, k[0], s[0]), same_padding(w, k[1], s[1]))
            else:
                padding = ((0, 0), (0, 0))
            oh = (h + sum(padding[0]) - k[0]) // s[0] + 1
            ow = (w + sum(padding[1]) - k[1]) // s[1] + 1
            if h + sum(padding[0]) < k[0] or w + sum(padding[1]) < k[1] or oh < 1 or ow < 1:
                raise SpecError(f"{where}: kernel {k} does not fit input {h}x{w}: output would be empty")
            shape = (oh, ow, filters)
            weights = {"kernel": (k[0], k[1], c, filters), "bias": (filters,)}
            config.update(filters=filters, kernel_size=k, strides=s, padding=pad_mode, activation=activation)
        elif kind == "maxpool2d":
            p = _pair(layer.get("pool_size", 2), "pool_size", where)
            s = _pair(layer.get("strides") or p, "strides", where)
            h, w, c = shape
            if h < p[0] or w < p[1]:
                raise SpecError(f"{where}: pool {p} does not fit input {h}x{w}: output would be empty")
            shape = ((h - p[0]) // s[0] + 1, (w - p[1]) // s[1] + 1, c)
            config.update(pool_size=p, strides=s)
        elif kind == "flatten":
            if len(shape) != 3:
                raise SpecError(f"{where}: input is already flat")
            pending_flatten = shape
            shape = (math.prod(shape),)
        elif kind == "dense":
            units = layer.get("units")
            if not isinstance(units, int) or isinstance(units, bool) or units < 1:
                raise SpecError(f"{where}: units must be a positive int, got {units!r}")
            if len(shape) != 1:
                raise SpecError(f"{where}: Dense needs a flat input, got {shape}; add a flatten layer before it")
            flatten_from, pending_flatten = pending_flatten, None
            weights = {"kernel": (shape[0], units), "bias": (units,)}
            shape = (units,)
            config.update(units=units, activation=activation)
        if weights:
            params = sum(math.prod(s) for s in weights.values())
        out.append(LayerInfo(index, kind, name, config, in_shape, shape, params,
                             weights, padding, flatten_from))
    if len(shape) != 1:
        raise SpecError(f"the last layer must give class scores (units,), got {shape}; end with flatten + dense")
    if out[-1].type != "dense" or out[-1].activation is not None:
        raise SpecError("the last layer must be a dense layer without activation (it outputs logits)")
    return tuple(out)


def conv(filters, kernel_size=3, strides=1, padding="valid", activation="relu"):
    return {"type": "conv2d", "filters": filters, "kernel_size": kernel_size, "strides": strides,
            "padding": padding, "activation": activation}


def pool(pool_size=2, strides=None):
    return {"type": "maxpool2d", "pool_size": pool_size, "strides": strides}


def dense(units, activation=None):
    return {"type": "dense", "units": units, "activation": activation}


FLATTEN = {"type": "flatten"}

#: The notebook's CNN: 90,978 parameters.
DEFAULT_SPEC = Spec(
    input_shape=(28, 28, 1),
    layers=(conv(28), pool(), conv(64), pool(), conv(64), FLATTEN, dense(64, "relu"), dense(10)),
)


def load_spec(path=None) -> Spec:
    return DEFAULT_SPEC if path is None else Spec.load(path)
