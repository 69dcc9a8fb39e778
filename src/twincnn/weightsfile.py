"""The framework-neutral weights file: canonical weights as safetensors, the spec in the file's metadata.

Any twin (or plain NumPy) can read it: tensor names are the canonical ones ("conv1/kernel", ...), float32,
in the layout spec.py documents, which the metadata repeats so the file explains itself.
"""

from __future__ import annotations

import json

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _load_bytes
from safetensors.numpy import save as _save_bytes

from .spec import Spec, SpecError
from .weights import check_layout

SUFFIX = ".safetensors"
SPEC_KEY = "twincnn.spec"
LAYOUT_KEY = "twincnn.layout"
LAYOUT = ("conv kernel (kh, kw, in, out) on NHWC input (in: per group), bias (out,); depthwise kernel (kh, kw, in, "
          "multiplier), output channel c * multiplier + m; dense kernel (in, out), bias (out,); batchnorm gamma, beta, "
          "moving_mean, moving_variance (C,), layernorm gamma, beta (C,); after flatten, features in (H, W, C) order")


def to_bytes(spec: Spec, weights: dict) -> bytes:
    check_layout(spec, weights)
    tensors = {name: np.ascontiguousarray(weights[name], np.float32) for name in spec.weight_shapes()}
    return _save_bytes(tensors, metadata={SPEC_KEY: json.dumps(spec.to_dict()), LAYOUT_KEY: LAYOUT})


def save(path, spec: Spec, weights: dict) -> None:
    with open(path, "wb") as f:
        f.write(to_bytes(spec, weights))


def _metadata(data: bytes) -> dict:
    """safetensors' header: 8 bytes of length, then JSON whose __metadata__ holds the strings we wrote."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]).get("__metadata__") or {}


def from_bytes(data: bytes, spec: Spec | None = None) -> tuple[dict[str, np.ndarray], Spec]:
    """(canonical weights in spec order, spec); ValueError with one line for anything else."""
    try:
        tensors = _load_bytes(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError) as exc:  # a truncated or foreign file; json's errors are ValueErrors
        raise ValueError(f"not a safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None
    stored = None
    if SPEC_KEY in metadata:
        try:
            stored = Spec.from_dict(json.loads(metadata[SPEC_KEY]))
        except (json.JSONDecodeError, SpecError) as exc:
            raise ValueError(f"its stored spec is unusable ({exc})") from None
    if stored is None and spec is None:
        raise ValueError("no spec in its metadata; pass --spec")
    if stored is not None and spec is not None and stored != spec:  # the same network, however written
        raise ValueError(f"its stored spec ({stored.describe()}) does not match --spec ({spec.describe()})")
    spec = stored or spec
    try:
        check_layout(spec, tensors)
    except ValueError as exc:
        raise ValueError(f"{exc}; pass the right --spec") from None
    return {name: tensors[name].astype(np.float32, copy=False) for name in spec.weight_shapes()}, spec


def load(path, spec: Spec | None = None) -> tuple[dict[str, np.ndarray], Spec]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read it ({exc.strerror})") from None
    return from_bytes(data, spec)
