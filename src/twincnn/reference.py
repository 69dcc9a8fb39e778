"""The spec's forward pass in plain NumPy on canonical weights: the framework-free reference for ports.

Computed in float32, as the twins are; sums run in another order, so results agree to rounding (~1e-6).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf, expit

from .spec import INPUT, OUTPUTS, Spec, SpecError, canonical


def _windows(h: np.ndarray, size, strides, dilation=(1, 1)) -> np.ndarray:
    """(N, OH, OW, C, kh, kw) views of every window, stride and dilation applied."""
    extent = tuple((k - 1) * d + 1 for k, d in zip(size, dilation))
    win = sliding_window_view(h, extent, axis=(1, 2))[:, ::strides[0], ::strides[1]]
    return win[..., ::dilation[0], ::dilation[1]]


def _pad(h: np.ndarray, padding, value=0.0) -> np.ndarray:
    (top, bottom), (left, right) = padding
    return np.pad(h, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _conv(h, kernel, info):
    """A grouped convolution (one group: the plain one) as one matmul per group."""
    cfg = info.config
    win = _windows(_pad(h, info.padding), cfg["kernel_size"], cfg["strides"], cfg["dilation_rate"])
    win = win.transpose(0, 1, 2, 4, 5, 3)  # (N, OH, OW, kh, kw, C)
    kh, kw, cin, cout = kernel.shape
    groups, per_group = cfg["groups"], cout // cfg["groups"]
    n, oh, ow = win.shape[:3]
    out = [(win[..., g * cin:(g + 1) * cin].reshape(n * oh * ow, kh * kw * cin)
            @ kernel[..., g * per_group:(g + 1) * per_group].reshape(kh * kw * cin, per_group))
           for g in range(groups)]
    return np.concatenate(out, axis=1).reshape(n, oh, ow, cout)


def _depthwise(h, kernel, info):
    """Output channel c * multiplier + m = input channel c's window times kernel[:, :, c, m]."""
    win = _windows(_pad(h, info.padding), info.config["kernel_size"], info.config["strides"])  # (N, OH, OW, C, kh, kw)
    out = np.einsum("nyxcij,ijcm->nyxcm", win, kernel)
    return out.reshape(*out.shape[:3], -1)


def _avgpool(h, info):
    """Sums over windows of the zero-padded input, divided by each window's real cells (Keras's 'same')."""
    cfg = info.config
    sums = _windows(_pad(h, info.padding), cfg["pool_size"], cfg["strides"]).sum(axis=(4, 5))
    ones = _pad(np.ones((1, *h.shape[1:3], 1), np.float32), info.padding)
    cells = _windows(ones, cfg["pool_size"], cfg["strides"]).sum(axis=(4, 5))
    return sums / cells


def _normalise(h, mean, var, gamma, beta, epsilon):
    inv = (1 / np.sqrt(var + np.float32(epsilon))).astype(np.float32) * gamma
    return h * inv + (beta - mean * inv)


def _activate(h, activation, slope):
    if activation == "relu":
        return np.maximum(h, 0)
    if activation == "relu6":
        return np.clip(h, 0, 6)
    if activation == "sigmoid":
        return expit(h)
    if activation == "tanh":
        return np.tanh(h)
    if activation == "elu":
        return np.where(h > 0, h, np.expm1(np.minimum(h, 0)))
    if activation == "silu":
        return h * expit(h)
    if activation == "gelu":
        return 0.5 * h * (1 + erf(h / np.float32(math.sqrt(2))))
    if activation == "gelu_tanh":
        return 0.5 * h * (1 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (h + np.float32(0.044715) * h ** 3)))
    if activation == "leaky_relu":
        return np.where(h > 0, h, h * np.float32(slope))
    return h


def layer_output(info, inputs: list, weights: dict, training: bool = False) -> np.ndarray:
    """One layer's output from its inputs' outputs (canonical NHWC arrays). In inference mode BatchNorm uses its
    moving statistics; in training mode the batch's (biased variance, as Keras). Dropout is the identity in both:
    its random mask belongs to no reference."""
    cfg = info.config
    w = {key: np.asarray(weights[f"{info.name}/{key}"], np.float32) for key in info.weight_shapes}
    h = inputs[0]
    if info.type == "conv2d":
        h = _conv(h, w["kernel"], info) + w.get("bias", 0)
    elif info.type == "depthwiseconv2d":
        h = _depthwise(h, w["kernel"], info) + w.get("bias", 0)
    elif info.type == "maxpool2d":  # padded cells are -inf: they never win
        h = _windows(_pad(h, info.padding, -np.inf), cfg["pool_size"], cfg["strides"]).max(axis=(4, 5))
    elif info.type == "avgpool2d":
        h = _avgpool(h, info)
    elif info.type == "globalavgpool2d":
        h = h.mean(axis=(1, 2))
    elif info.type == "flatten":
        h = h.reshape(len(h), -1)  # NHWC rows: (H, W, C) order
    elif info.type == "dense":
        h = h @ w["kernel"] + w.get("bias", 0)
    elif info.type == "batchnorm" and training:  # statistics over every axis but the features'
        axes = tuple(range(h.ndim - 1))
        h = _normalise(h, h.mean(axis=axes), h.var(axis=axes), w["gamma"], w["beta"], cfg["epsilon"])
    elif info.type == "batchnorm":
        h = _normalise(h, w["moving_mean"], w["moving_variance"], w["gamma"], w["beta"], cfg["epsilon"])
    elif info.type == "layernorm":  # over the last axis: each position's channels, or the features
        h = _normalise(h, h.mean(axis=-1, keepdims=True), h.var(axis=-1, keepdims=True), w["gamma"],
                       w["beta"], cfg["epsilon"])
    elif info.type == "zeropad2d":
        h = _pad(h, info.padding)
    elif info.type == "add":
        h = sum(inputs[1:], inputs[0])
    elif info.type == "concatenate":
        h = np.concatenate(inputs, axis=-1)
    # dropout: the identity in inference
    return _activate(h, info.activation, cfg.get("negative_slope")).astype(np.float32)


def activations(spec: Spec, weights: dict, x: np.ndarray, training: bool = False) -> dict[str, np.ndarray]:
    """Every layer's output for canonical input x (N, H, W, C), by layer name; inference mode unless
    ``training`` (see layer_output)."""
    outputs = {INPUT: np.asarray(x, np.float32)}
    for info in spec.info:
        outputs[info.name] = layer_output(info, [outputs[n] for n in info.inputs], weights, training)
    return outputs


def forward(spec: Spec, weights: dict, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits for canonical input x (N, H, W, C), in inference mode: BatchNorm uses its moving statistics,
    dropout is the identity."""
    last = spec.info[-1].name
    out = [activations(spec, weights, x[start:start + batch_size])[last] for start in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, spec.num_classes), np.float32)


def apply_head(logits: np.ndarray, output: str) -> np.ndarray:
    """The spec's output head (spec.OUTPUTS) on logits (N, K), in float64: what a model ending in it returns.
    log_softmax subtracts each row's maximum first, so that no exponential overflows."""
    z = np.asarray(logits, np.float64)
    if output == "logits":
        return z
    if output not in OUTPUTS:
        raise SpecError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return log_probs if output == "log_softmax" else np.exp(log_probs)


_KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "relu6": (0.0, 6.0)}  # where a derivative jumps
# Two frameworks' forward passes differ by rounding, up to ~6e-6 after a training-mode BatchNorm (which divides
# by a small batch deviation; seen with oneDNN capped at SSE4.1): a ReLU input closer than this to its kink may
# switch in one model only. Gradient comparisons use batches that keep this far from every kink.
KINK_MARGIN = 1e-5


def kink_distance(spec: Spec, weights: dict, x: np.ndarray, training: bool = False) -> float:
    """How close any input of a ReLU-like activation comes to its kink on this forward pass of x, not counting
    inputs exactly at it: where two models' rounding differs by more, the activation may switch in one only,
    and a gradient differ entirely."""
    spec = canonical(spec)  # every activation a layer of its own: its input is the pre-activation
    outputs = activations(spec, weights, x, training=training)
    distances = [np.abs(outputs[info.inputs[0]] - kink)
                 for info in spec.info if info.type == "activation" for kink in _KINKS.get(info.activation, ())]
    # exactly at the kink: zeros times weights plus a zero bias (blank pixels), exact in every framework too
    off_kink = [d[d > 0].min() for d in distances if (d > 0).any()]
    return float(min(off_kink, default=np.inf))
