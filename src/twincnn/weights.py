"""Canonical weights in NumPy: a framework-free initialiser and the worst-mismatch report.

Canonical weights are an ordered dict {"conv1/kernel": array, "conv1/bias": array, ...}
in the layout spec.py documents. Every backend converts to and from this layout only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .spec import Spec


def initial_weights(spec: Spec, seed: int) -> dict[str, np.ndarray]:
    """Keras's defaults (Glorot-uniform kernels, zero biases), drawn with NumPy from ``seed``.

    The fair protocol starts both twins from these, so neither framework's own
    initialiser (Keras: Glorot; PyTorch: Kaiming-uniform with a=sqrt(5)) decides the result.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in spec.weight_shapes().items():
        if name.endswith("/bias"):
            out[name] = np.zeros(shape, np.float32)
            continue
        receptive = math.prod(shape[:-2])  # kh * kw for a conv kernel, 1 for a dense one
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        out[name] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
    return out


def random_weights(spec: Spec, seed: int, scale: float = 0.3) -> dict[str, np.ndarray]:
    """Random kernels *and* non-zero biases: a transfer test that leaves biases at zero proves nothing."""
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape) * scale / np.sqrt(math.prod(shape[:-1])) if
                   name.endswith("/kernel") else rng.uniform(-0.5, 0.5, shape)).astype(np.float32)
            for name, shape in spec.weight_shapes().items()}


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
