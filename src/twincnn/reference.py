"""The spec's forward pass in plain NumPy on canonical weights: the framework-free reference for ports.

Computed in float32, as the twins are; sums run in another order, so results agree to rounding (~1e-6).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .spec import Spec


def _windows(h: np.ndarray, size, strides) -> np.ndarray:
    """(N, OH, OW, C, kh, kw) views of every window, stride applied."""
    return sliding_window_view(h, tuple(size), axis=(1, 2))[:, ::strides[0], ::strides[1]]


def forward(spec: Spec, weights: dict, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits for canonical input x (N, H, W, C)."""
    out = []
    for start in range(0, len(x), batch_size):
        h = np.asarray(x[start:start + batch_size], np.float32)
        for info in spec.info:
            cfg = info.config
            if info.type == "conv2d":
                (top, bottom), (left, right) = info.padding
                h = np.pad(h, ((0, 0), (top, bottom), (left, right), (0, 0)))
                kernel = np.asarray(weights[f"{info.name}/kernel"], np.float32)
                kh, kw, cin, cout = kernel.shape
                win = _windows(h, (kh, kw), cfg["strides"]).transpose(0, 1, 2, 4, 5, 3)  # (N, OH, OW, kh, kw, C)
                n, oh, ow = win.shape[:3]
                h = (win.reshape(n * oh * ow, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)).reshape(n, oh, ow, cout)
                h = h + weights[f"{info.name}/bias"]
            elif info.type == "maxpool2d":
                h = _windows(h, cfg["pool_size"], cfg["strides"]).max(axis=(4, 5))
            elif info.type == "flatten":
                h = h.reshape(len(h), -1)  # NHWC rows: (H, W, C) order
            else:
                h = h @ np.asarray(weights[f"{info.name}/kernel"], np.float32) + weights[f"{info.name}/bias"]
            if info.activation == "relu":
                h = np.maximum(h, 0)
        out.append(h.astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, spec.num_classes), np.float32)
