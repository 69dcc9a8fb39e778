"""`twincnn port`: a saved model of one framework -> another's, or to and from the framework-neutral
.safetensors file, verified on logits: of the test images of --data, of the bundled MNIST where the model takes
its images and classes, or of random inputs.

Any direction is: read the source -> canonical weights -> the destination (a twin, or the neutral file read
back) -> compare logits on the test set -> write atomically. Nothing is written unless the weights arrive
bit for bit and the logits agree. The neutral file's logits come from a plain NumPy forward pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import backends, reference, weightsfile
from .check import inputs_for
from .errors import UserError
from .files import replace_atomically
from .zoo import load_spec
from .weights import worst_mismatch

VERIFY_SAMPLES = 10_000  # test images: the whole MNIST test set
RANDOM_SAMPLES = 256  # random inputs where no data is given: a large model's 10,000 would fill memory
NEUTRAL = "safetensors"  # the framework-neutral file (weightsfile.py): any twin, or plain NumPy, reads it


def _format(path: Path, role: str) -> str:
    suffix = path.suffix.lower()
    if suffix == weightsfile.SUFFIX:
        return NEUTRAL
    try:
        return backends.file_formats()[suffix][0]
    except KeyError:
        known = {}
        for name, (framework, _) in backends.file_formats().items():
            known.setdefault(framework, []).append(name)
        choices = ", ".join(f"{'/'.join(suffixes)} ({framework})" for framework, suffixes in known.items())
        raise UserError(f"{path}: unknown {role} format {path.suffix or '(no suffix)'!r}; "
                        f"use {choices} or {weightsfile.SUFFIX} (any framework)") from None


def _read(source: Path, src_name: str, spec_path):
    """(spec, canonical weights, the source's logits function); ValueError for a file that is not usable."""
    given = load_spec(spec_path) if spec_path else None
    if src_name == NEUTRAL:  # weights only: plain NumPy computes what they compute
        weights, spec = weightsfile.load(source, given)
        return spec, weights, lambda x: reference.forward(spec, weights, x)
    src = backends.twin(src_name)
    carries_spec = backends.file_formats()[source.suffix.lower()][1]
    model, spec = src.load_file(source, given if given or carries_spec else load_spec(None))
    return spec, src.get_weights(model, spec), lambda x: src.predict(model, x)


def _prepare(dst_name: str, spec, weights):
    """(the destination's logits function, write(path)); the transfer itself is checked bit for bit."""
    if dst_name == NEUTRAL:
        blob = weightsfile.to_bytes(spec, weights)
        back, _ = weightsfile.from_bytes(blob)
        got = back
        logits = lambda x: reference.forward(spec, back, x)  # noqa: E731
        write = lambda path: path.write_bytes(blob)  # noqa: E731
    else:
        dst = backends.twin(dst_name)
        model = dst.build(spec)
        dst.set_weights(model, spec, weights)
        got = dst.get_weights(model, spec)
        logits = lambda x: dst.predict(model, x)  # noqa: E731
        write = lambda path: dst.save_file(model, spec, path)  # noqa: E731
    changed = [name for name in weights if not np.array_equal(got[name], weights[name])]
    if changed:
        raise UserError(f"the transfer changed {', '.join(changed)} ({worst_mismatch(got, weights)}); nothing written")
    return logits, write


def port(source, dest, spec_path=None, data_path=None, tolerance=1e-4, log=print, data_options=None) -> int:
    source, dest = Path(source), Path(dest)
    src_name, dst_name = _format(source, "source"), _format(dest, "output")
    if src_name == dst_name:
        raise UserError(f"{source} -> {dest}: both are {src_name} files; port converts between frameworks")
    if not source.is_file():
        raise UserError(f"{source}: no such file")
    if dest.suffix.lower() == ".h5":
        raise UserError(f"{dest}: Keras 3 saves .keras files; name the output OUT.keras")
    try:
        spec, weights, source_logits = _read(source, src_name, spec_path)
    except UserError:
        raise
    except ValueError as exc:  # load_file's word for bad input: an unsupported layer, a mismatch, not a model
        raise UserError(f"{source}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    dest_logits, write = _prepare(dst_name, spec, weights)

    x, _, described = inputs_for(spec, data_path, VERIFY_SAMPLES, data_options=data_options,
                                 random_samples=RANDOM_SAMPLES)
    a, b = source_logits(x), dest_logits(x)
    worst = worst_mismatch(b, a, "logits")
    agree = float(np.mean(a.argmax(1) == b.argmax(1)))
    log(f"spec: {spec.describe()} ({spec.total_params:,} parameters)")
    log(f"verified on {described}: max |Δlogit| = {worst.max_abs:.3g}, argmax agreement {agree:.2%}"
        + (" (against a plain NumPy forward pass)" if NEUTRAL in (src_name, dst_name) else ""))
    if worst.max_abs > tolerance or agree < 1.0:
        raise UserError(f"logits differ beyond {tolerance:g} ({worst}); {dest} not written")

    dest.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(dest, write)  # no half-written output, even on Ctrl-C
    log(f"wrote {dest}")
    if spec.output != "logits" and not _carries_spec(dest):
        log(f"  {dest.suffix} holds weights only: read it back with --spec of a spec whose \"output\" is "
            f"\"{spec.output}\" to keep the output head")
    return 0


def _carries_spec(path: Path) -> bool:
    """Whether a file keeps the architecture, output head included (a Keras model, the neutral file)."""
    suffix = path.suffix.lower()
    return suffix == weightsfile.SUFFIX or backends.file_formats()[suffix][1]
