"""The side-by-side table, report.md and results.json, written into a directory atomically."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError
from ..tables import render


def _fmt(fig: dict, key: str, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    value = fig.get(key)
    if value is None:
        return "-"
    text = f"{value * scale:{spec}}{suffix}"
    lo_hi = fig.get("spread", {}).get(key)
    if lo_hi and len(fig.get("runs", [])) > 1:
        text += f" ({lo_hi[0] * scale:{spec}}–{lo_hi[1] * scale:{spec}})"
    return text


ROWS = [  # label, key, format, scale, suffix
    ("training time, total", "train_seconds", ".1f", 1, " s"),
    ("  first epoch (warm-up incl.)", "first_epoch_seconds", ".1f", 1, " s"),
    ("  later epochs, mean", "later_epoch_seconds", ".1f", 1, " s"),
    ("median step", "median_step_ms", ".2f", 1, " ms"),
    ("images / second", "images_per_second", ",.0f", 1, ""),
    ("× hardware floor", "floor_multiple", ".2f", 1, "×"),
    ("test accuracy", "test_accuracy", ".2f", 100, " %"),
    ("test loss", "test_loss", ".4f", 1, ""),
]


def side_by_side(results: dict, diff: dict | None, markdown: bool = False) -> str:
    names = list(results)
    headers = ["", *names] + (["difference"] if diff else [])
    rows = []
    for label, key, spec, scale, suffix in ROWS:
        row = [label] + [_fmt(results[n], key, spec, scale, suffix) for n in names]
        if diff:
            a, b = diff["frameworks"]
            va, vb = results[a].get(key), results[b].get(key)
            if key == "test_accuracy":
                row.append(f"{diff['accuracy_gap'] * 100:+.2f} pp ({a} − {b})")
            elif key == "train_seconds":
                row.append(f"{diff['faster']} {diff['speedup_percent']:.0f} % less time")
            elif va is not None and vb:
                row.append(f"{va / vb:.2f}× ({a} / {b})")
            else:
                row.append("")
        rows.append(row)
    rows.append(["steps"] + [f"{results[n]['steps']:,}" for n in names] + ([""] if diff else []))
    if diff:
        rows.append(["same prediction on test images"] + [""] * len(names)
                    + [f"{diff['prediction_agreement']:.2%}"])
    return render(headers, rows, markdown=markdown)


def report_markdown(doc: dict) -> str:
    cfg, env, results = doc["config"], doc["environment"], doc["frameworks"]
    lines = [f"# twincnn compare: {cfg['protocol']} protocol, {cfg['variant']} variant", ""]
    if cfg.get("quick"):
        lines += ["**Quick demo**: fewer epochs on a subset (see data below); not the notebook's experiment.", ""]
    lines += [
        f"- data: {doc['data']['source']} ({doc['data']['train_images']:,} train / {doc['data']['test_images']:,} "
        f"test images), sha256 `{doc['data']['sha256'][:16]}…`",
        f"- epochs {cfg['epochs']}, batch {cfg['batch_size']}, Adam lr {cfg['lr']}, seeds {cfg['seeds']}, "
        f"threads {cfg['threads']}, device {cfg['device']}",
        f"- CPU: {env['cpu_model']} ({env['cpu_count']} cores); allocator: {env.get('allocator', 'not recorded')}; " +
        "; ".join(env["frameworks"][n]["version"] for n in results),
    ]
    if doc.get("floor"):
        f = doc["floor"]
        lines.append(f"- hardware floor: {f['train_flops'] / 1e12:.2f} TFLOP at {f['matmul_gflops']:.0f} GFLOP/s "
                     f"({f['method']}) = {f['floor_seconds']:.1f} s")
    lines += ["", side_by_side(results, doc.get("difference"), markdown=True), ""]
    for name, fig in results.items():
        lines += [f"## {name}: classification report (seed {cfg['seeds'][0]})", "", "```",
                  fig["classification_report_text"].rstrip(), "```", "",
                  "confusion matrix (rows: true digit, columns: predicted)", "", "```"]
        lines += [" ".join(f"{v:5d}" for v in row) for row in fig["confusion_matrix"]]
        lines += ["```", ""]
    if doc.get("figures"):
        lines += ["## Figures", ""] + [f"![{p}]({p})" for p in doc["figures"]] + [""]
    return "\n".join(lines)


def refuse_nonempty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: directory exists and is not empty; choose a new one")


@contextmanager
def atomic_directory(final: Path):
    """Yield a hidden sibling to fill; rename it to ``final`` only on success, delete it otherwise.

    An interrupted run (Ctrl-C) therefore never leaves a directory that looks complete.
    """
    final = Path(final)
    refuse_nonempty(final)  # again: something may have appeared while training ran
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            final.rmdir()  # empty, checked above
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
