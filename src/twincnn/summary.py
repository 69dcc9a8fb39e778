"""`twincnn summary`: the spec's arithmetic beside what each installed framework builds."""

from __future__ import annotations

from . import backends
from .spec import Spec
from .tables import render


def summarize(spec: Spec, frameworks=None) -> tuple[str, bool]:
    """The per-layer table and whether every built model agrees with the spec."""
    frameworks = backends.natives() if frameworks is None else frameworks
    measured, notes = {}, []
    for name in frameworks:
        try:
            backend = backends.twin(name)
        except backends.FrameworkMissing as exc:
            notes.append(f"{name}: skipped ({exc})")
            continue
        measured[name] = {row[0]: row for row in backend.layer_summary(backend.build(spec, seed=0), spec)}
    headers = ["layer", "output shape", "params"]
    for name in measured:
        headers += [f"{name} shape", f"{name} params"]
    rows, agree = [], True
    for info in spec.info:
        row = [info.name, str(info.output_shape), f"{info.params:,}"]
        for name, layers in measured.items():
            _, shape, params = layers[info.name]
            ok = tuple(shape) == info.output_shape and params == info.params
            agree &= ok
            row += [str(tuple(shape)) + ("" if ok else " ≠"), f"{params:,}"]
        rows.append(row)
    totals = ["total", "", f"{spec.total_params:,}"]
    for name, layers in measured.items():
        total = sum(r[2] for r in layers.values())
        agree &= total == spec.total_params
        totals += ["", f"{total:,}"]
    rows.append(totals)
    lines = [f"spec: {spec.describe()}", "", render(headers, rows), ""]
    if spec.output != "logits":  # no layer of its own: the twins compute the logits, a saved model applies it
        lines.append(f"output head: {spec.output} over {spec.info[-1].name}'s logits {spec.output_shape}; "
                     f"the twins compute and train on the logits")
    lines += notes
    if measured:
        lines.append(("agree: every framework matches the spec's shapes and parameter counts" if agree else
                      "MISMATCH: a built model differs from the spec (marked ≠)"))
    else:
        lines.append("no framework installed: pip install 'twincnn[all]' to compare built models")
    return "\n".join(lines), agree
