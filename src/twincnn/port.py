"""`twincnn port`: a saved Keras model -> PyTorch state_dict, or the reverse, verified on MNIST logits.

Any direction is: load with the source backend -> canonical weights -> build the destination twin ->
compare logits on the test set -> write atomically. Nothing is written unless the logits agree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import backends, data
from .errors import UserError
from .spec import load_spec
from .weights import worst_mismatch

FORMATS = {".keras": "tensorflow", ".h5": "tensorflow", ".pt": "torch", ".pth": "torch"}


def _format(path: Path, role: str) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise UserError(f"{path}: unknown {role} format {path.suffix or '(no suffix)'!r}; "
                        f"use .keras/.h5 (Keras) or .pt/.pth (PyTorch)") from None


def port(source, dest, spec_path=None, data_path=None, tolerance=1e-4, log=print) -> int:
    source, dest = Path(source), Path(dest)
    src_name, dst_name = _format(source, "source"), _format(dest, "output")
    if src_name == dst_name:
        raise UserError(f"{source} -> {dest}: both are {src_name} files; port converts between frameworks")
    if not source.is_file():
        raise UserError(f"{source}: no such file")
    if dest.suffix.lower() == ".h5":
        raise UserError(f"{dest}: Keras 3 saves .keras files; name the output OUT.keras")
    src, dst = backends.load(src_name), backends.load(dst_name)
    # A Keras file carries its architecture (--spec, if given, must match it); a state_dict does not.
    spec = load_spec(spec_path) if spec_path or src_name == "torch" else None
    try:
        src_model, spec = src.load_file(source, spec)
    except UserError:
        raise
    except ValueError as exc:  # load_file's word for bad input: an unsupported layer, a mismatch, not a model
        raise UserError(f"{source}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if spec.input_shape != (28, 28, 1) or spec.num_classes != 10:
        raise UserError(f"{source}: input {spec.input_shape} with {spec.num_classes} outputs; twincnn verifies "
                        f"ports on 28x28x1, 10-class MNIST-format data")
    dst_model = dst.build(spec)
    dst.set_weights(dst_model, spec, src.get_weights(src_model, spec))

    x = data.load(data_path).images("test")
    a, b = src.predict(src_model, x), dst.predict(dst_model, x)
    worst = worst_mismatch(b, a, "logits")
    agree = float(np.mean(a.argmax(1) == b.argmax(1)))
    log(f"spec: {spec.describe()} ({spec.total_params:,} parameters)")
    log(f"verified on {len(x):,} test images: max |Δlogit| = {worst.max_abs:.3g}, argmax agreement {agree:.2%}")
    if worst.max_abs > tolerance or agree < 1.0:
        raise UserError(f"logits differ beyond {tolerance:g} ({worst}); {dest} not written")

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.stem}.partial-{os.getpid()}{dest.suffix}")
    try:
        dst.save_file(dst_model, spec, tmp)
        os.replace(tmp, dest)  # atomic: no half-written output, even on Ctrl-C
    finally:
        tmp.unlink(missing_ok=True)
    log(f"wrote {dest}" + (" (a state_dict with keys " + ", ".join(dst_model.state_dict())[:80] + "...)"
                           if dst_name == "torch" else ""))
    return 0
