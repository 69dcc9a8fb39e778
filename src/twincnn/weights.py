"""Canonical weights in NumPy: a framework-free initialiser and the worst-mismatch report.

Canonical weights are an ordered dict {"conv1/kernel": array, "conv1/bias": array, ...}
in the layout spec.py documents. Every backend converts to and from this layout only.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .spec import Spec


# Keras's initialisers for the normalisation layers' weights: constants, no draws
CONSTANT_INITIAL = {"bias": 0.0, "beta": 0.0, "gamma": 1.0, "moving_mean": 0.0, "moving_variance": 1.0}


def initial_weights(spec: Spec, seed: int) -> dict[str, np.ndarray]:
    """Keras's defaults (Glorot-uniform kernels, zero biases; BatchNorm and LayerNorm gamma 1, beta 0, moving
    mean 0, moving variance 1), drawn with NumPy from ``seed``: one draw per kernel, in layer order.

    The fair protocol starts both twins from these, so neither framework's own
    initialiser (Keras: Glorot; PyTorch: Kaiming-uniform with a=sqrt(5)) decides the result.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for info in spec.param_layers:
        for key, shape in info.weight_shapes.items():
            name = f"{info.name}/{key}"
            if key in CONSTANT_INITIAL:
                out[name] = np.full(shape, CONSTANT_INITIAL[key], np.float32)
                continue
            # Keras's fans: (kh, kw, in, out) conv and (kh, kw, in, multiplier) depthwise kernels alike
            receptive = math.prod(shape[:-2])  # kh * kw for a conv kernel, 1 for a dense one
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            out[name] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
    return out


# random_weights' range for each weight that is not a kernel: every value non-zero and, for the
# normalisation layers, away from the initial 1 and 0 (a gamma of 1 or a mean of 0 hides a transposition)
RANDOM_RANGE = {"bias": (-0.5, 0.5), "beta": (-0.5, 0.5), "gamma": (0.5, 1.5), "moving_mean": (-0.5, 0.5),
                "moving_variance": (0.5, 2.0)}


def random_weights(spec: Spec, seed: int, scale: float = 0.3) -> dict[str, np.ndarray]:
    """Random kernels *and* non-zero biases: a transfer test that leaves biases at zero proves nothing.

    Kernels are standard normal * scale / sqrt(fan in); a depthwise kernel's fan in is kh * kw.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for info in spec.param_layers:
        for key, shape in info.weight_shapes.items():
            if key == "kernel":
                fan_in = math.prod(shape[:2]) if info.type == "depthwiseconv2d" else math.prod(shape[:-1])
                value = rng.standard_normal(shape) * scale / np.sqrt(fan_in)
            else:
                value = rng.uniform(*RANDOM_RANGE[key], shape)
            out[f"{info.name}/{key}"] = value.astype(np.float32)
    return out


def check_layout(spec: Spec, weights: dict) -> None:
    """Raise ValueError naming the first weight whose name or shape does not fit ``spec``."""
    expected = spec.weight_shapes()
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    if missing or extra:
        raise ValueError(f"weights do not fit the spec: missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        if tuple(np.shape(weights[name])) != tuple(shape):
            raise ValueError(f"weight {name} has shape {tuple(np.shape(weights[name]))}, the spec needs {shape}")


@dataclass
class Mismatch:
    """The worst element between two arrays (or dicts of arrays)."""

    max_abs: float
    where: str
    a: float
    b: float

    def __str__(self):
        return f"max |Δ| = {self.max_abs:.3g} at {self.where}: {self.a!r} vs {self.b!r}"


def worst_mismatch(a, b, name: str = "array") -> Mismatch:
    if isinstance(a, dict):
        worst = Mismatch(0.0, "(no elements)", 0.0, 0.0)
        for key in a:
            m = worst_mismatch(a[key], b[key], key)
            if m.max_abs > worst.max_abs or worst.where == "(no elements)":
                worst = m
        return worst
    a, b = (np.asarray(v, np.float64) for v in (a, b))  # no uint8 wrap-around, no float32 rounding
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return Mismatch(0.0, f"{name} (empty)", 0.0, 0.0)
    diff = np.abs(a - b)
    diff = np.where(np.isnan(diff), np.inf, diff)
    index = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return Mismatch(float(diff[index]), f"{name}{[int(i) for i in index]}", float(a[index]), float(b[index]))


def digest(weights: dict) -> str:
    """SHA-256 of canonical weights as float32, in their order: equal exactly where the weights are bit for bit."""
    h = hashlib.sha256()
    for name, value in weights.items():
        h.update(name.encode() + b"\0" + np.ascontiguousarray(value, np.float32).tobytes())
    return h.hexdigest()
