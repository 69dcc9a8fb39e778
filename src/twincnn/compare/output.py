"""The side-by-side table, report.md and results.json, written into a directory atomically."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from .. import stats
from . import precision
from ..errors import UserError
from ..stats import confidence_label
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
    ("  later epochs, mean", "later_epoch_seconds", ".2f", 1, " s"),
    ("median step", "median_step_ms", ".2f", 1, " ms"),
    ("images / second", "images_per_second", ",.0f", 1, ""),
    ("× hardware floor", "floor_multiple", ".2f", 1, "×"),
    ("test accuracy", "test_accuracy", ".2f", 100, " %"),
    ("test loss", "test_loss", ".4f", 1, ""),
]


def side_by_side(results: dict, markdown: bool = False) -> str:
    """One column per framework: medians over repeats, (min–max) where there are several."""
    names = list(results)
    rows = [[label] + [_fmt(results[n], key, spec, scale, suffix) for n in names]
            for label, key, spec, scale, suffix in ROWS]
    rows.append(["steps per run"] + [f"{results[n]['steps']:,}" for n in names])
    return render(["", *names], rows, markdown=markdown) + "\n" + TABLE_NOTE


TABLE_NOTE = ("Each cell: the median over repeats (min–max). A verdict is the geometric mean of paired time "
              "ratios of steady-state blocks, so it need not equal a ratio of these columns.")


def verdict_lines(doc: dict) -> list[str]:
    """The verdicts (steady state, with CI), the labelled extras, and the noise report."""
    lines = []
    for v in doc["verdicts"]:
        a, b = v["frameworks"]
        noisy = " [on a run flagged as noisy: see below]" if doc["noise"]["flags"] else ""
        lines.append(f"verdict, epochs {v['epochs']}: {v['text']}{noisy}")
        low, high = v["ci"]
        ci = f"{confidence_label(v['confidence'])} CI {low:.3f}–{high:.3f}" if high is not None else "no CI"
        lines.append(f"  time ratio {a}/{b}: steady state {v['ratio']:.3f} ({ci}, {v['units']} {v['unit']}); "
                     f"first epoch {v['first_epoch_ratio']:.2f}; total {v['total_ratio']:.2f}")
        if v.get("timing_note"):
            lines.append(f"  {v['timing_note']}")
        if v["family"]:
            lines.append(f"  family-wise error held at 5 % ({v['family']})")
        lines.append(f"  accuracy {a} − {b}: {v['accuracy_gap'] * 100:+.2f} pp; same prediction on "
                     f"{v['prediction_agreement']:.2%} of test images")
    if doc.get("precision"):
        lines.append(precision.summary(doc["precision"]))
    noise = doc["noise"]
    if noise["flags"]:
        lines.append("the machine was noisy: " + "; ".join(noise["flags"]))
    lines += noise["advice"]
    return lines


def scaling_lines(rows: list[dict]) -> list[str]:
    """One line per framework run data-parallel: its speed-up over its own one process."""
    return [f"{row['framework']}: {row['ranks']} ranks train {row['speedup']:.2f}x as fast as one process "
            f"({row['confidence']:.1%} CI {_speedup_bounds(*row['ci'])}), efficiency {row['efficiency']:.0%}; "
            f"{row['note']}" for row in rows]


def _speedup_bounds(low: float, high: float | None) -> str:
    """Rounded outward so that the printed interval excludes 1 exactly when the interval does."""
    if high is None:  # an interval with no upper bound (one timed unit)
        return stats.printed_bounds(low, low, lambda lo, _: (lo > 1) == (low > 1)).split("–")[0] + "–∞"
    return stats.printed_bounds(low, high, lambda lo, hi: (lo > 1 or hi < 1) == (low > 1 or high < 1))


def report_markdown(doc: dict) -> str:
    cfg, env, results = doc["config"], doc["environment"], doc["frameworks"]
    lines = [f"# twincnn compare: {cfg['protocol']} protocol, {cfg['variant']} variant", ""]
    if cfg.get("quick"):
        lines += ["**Quick demo**: fewer epochs on a subset (see data below); not the notebook's experiment.", ""]
    lines += ["## Verdict", ""] + [f"- {line.strip()}" for line in verdict_lines(doc)]
    lines += [f"- {line}" for line in scaling_lines(doc.get("scaling", []))] + [""]
    lines += [
        f"- data: {doc['data']['source']} ({doc['data']['train_images']:,} train / {doc['data']['test_images']:,} "
        f"test images), sha256 `{doc['data']['sha256'][:16]}…`",
        f"- epochs {cfg['epochs']} x repeats {cfg['repeats']}, batch {cfg['batch_size']}, Adam lr {cfg['lr']}, "
        f"seeds {cfg['seeds']}, threads {cfg['threads']}, device {cfg['device']}; one process per framework "
        f"and repeat, {cfg.get('interleaving', 'epochs interleaved')}",
        f"- machine `{doc['machine']['machine_id']}`: {doc['machine']['cpu_model']} "
        f"({doc['machine']['cpu_count']} cores, {doc['machine'].get('cpu_isa', 'instruction set not recorded')}); allocator: {env.get('allocator', 'not recorded')}",
        "- " + "; ".join(f"{e['version']} (instruction set {e.get('isa', 'not recorded')})"
                         for e in env["frameworks"].values()),
    ]
    if doc.get("floor"):
        f = doc["floor"]
        lines.append(f"- hardware floor: {f['train_flops'] / 1e12:.2f} TFLOP at {f['matmul_gflops']:.0f} GFLOP/s "
                     f"({f['method']}) = {f['floor_seconds']:.1f} s")
    lines += ["", side_by_side(results, markdown=True), ""]
    for name, fig in results.items():
        lines += [f"## {name}: classification report (seed {cfg['seeds'][0]})", "", "```",
                  fig["classification_report_text"].rstrip(), "```", "",
                  "confusion matrix (rows: true class, columns: predicted)", "", "```"]
        lines += confusion_lines(fig["confusion_matrix"], fig.get("class_names"))
        lines += ["```", ""]
    if doc.get("figures"):
        lines += ["## Figures", ""] + [f"![{p}]({p})" for p in doc["figures"]] + [""]
    return "\n".join(lines)


def confusion_lines(matrix: list, class_names: list | None) -> list[str]:
    """The confusion matrix as text, each row and column headed by its class name (cut to NAME_WIDTH
    characters, so that a hundred classes stay a table)."""
    names = [n[:NAME_WIDTH] for n in (class_names or [str(k) for k in range(len(matrix))])]
    width = max(5, *(len(str(v)) for row in matrix for v in row), *(len(n) for n in names))
    label = max(len(n) for n in names)
    return ([" " * label + " " + " ".join(f"{n:>{width}}" for n in names)]
            + [f"{n:>{label}} " + " ".join(f"{v:{width}d}" for v in row) for n, row in zip(names, matrix)])


NAME_WIDTH = 10  # characters of a class name that head a confusion matrix's row and column


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
