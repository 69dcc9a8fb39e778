"""`twincnn report DIR ...`: many compare results (from one machine or several) on one page and one figure.

Machines are compared only through dimensionless numbers measured within one run (each verdict's time
ratio and its CI, accuracies), never through absolute seconds pooled across runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from .compare.precision import REACHED
from .errors import UserError
from .files import replace_atomically
from .tables import render

SCHEMAS = (2, 3)  # 3 names a verdict's interval "ci" with its "confidence"; 2 had "ci95"


def find_results(paths) -> list[Path]:
    """Every results.json under the given directories (a run directory, or a folder of them)."""
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UserError(f"{path}: not a directory; pass results directories written by twincnn compare")
        hits = [path / "results.json"] if (path / "results.json").is_file() else sorted(
            p for p in path.rglob("results.json") if not any(part.startswith(".") for part in p.parts[-2:-1]))
        if not hits:
            raise UserError(f"{path}: no results.json inside; pass directories written by twincnn compare")
        found += hits
    return list(dict.fromkeys(p.resolve() for p in found))


def load_result(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable results.json ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") not in SCHEMAS:
        raise UserError(f"{path}: results schema {doc.get('schema') if isinstance(doc, dict) else None!r}, "
                        f"this twincnn reads schemas {', '.join(map(str, SCHEMAS))}; re-run twincnn compare")
    for v in doc["verdicts"]:
        v.setdefault("ci", v.get("ci95"))
        v.setdefault("confidence", 0.95)
    doc["_path"] = path
    return doc


def _isa_note(doc: dict) -> str:
    """', at jax AVX2, torch AVX2, ...': the instruction set each framework ran at ('' where not recorded)."""
    levels = [f"{name} {env['isa']}" for name, env in doc["environment"]["frameworks"].items() if "isa" in env]
    return f", at {', '.join(levels)}" if levels else ""


def _precision_note(doc: dict) -> str:
    """', ±3.0 % asked: reached (±2.6 %)': what --precision asked and got ('' where it was not asked)."""
    asked = doc.get("precision")
    if not asked:
        return ""
    reached = "no upper bound" if asked["reached"] is None else f"±{asked['reached']:.1%}"
    got = "reached" if asked["stopped"] == REACHED else f"not reached in {asked['max_minutes']:g} min"
    return f", ±{asked['target']:.1%} asked: {got} ({reached})"


def rows_of(docs: list[dict]) -> list[dict]:
    """One row per verdict (or per single-framework run), tagged with its machine, run and set-up: a CPU and
    a CUDA run of one machine are separate rows."""
    rows = []
    for doc in docs:
        cfg, env = doc["config"], doc["environment"]
        versions = ", ".join(e.get("version", "?") for e in env["frameworks"].values())
        common = {"machine": doc["machine"]["machine_id"], "run": doc["_path"].parent.name,
                  "setup": f"{cfg['protocol']}/{cfg['variant']}, {cfg['epochs']} ep x {cfg['repeats']}, "
                           f"{cfg['device']}, {cfg['threads']} threads"
                           + (" quick" if cfg.get("quick") else "") + _isa_note(doc) + _precision_note(doc),
                  "commit": (env.get("git_commit") or "no git")[:8], "versions": versions,
                  "flags": len(doc["noise"]["flags"]),
                  "accuracy": {k: v["test_accuracy"] for k, v in doc["frameworks"].items()}}
        for v in doc["verdicts"] or [None]:
            rows.append({**common, "verdict": v})
    return rows


def markdown(rows: list[dict]) -> str:
    table = []
    for r in rows:
        v = r["verdict"]
        acc = ", ".join(f"{k} {a:.2%}" for k, a in r["accuracy"].items())
        flags = f"{r['flags']} noise flag(s)" if r["flags"] else "none"
        if v is None:
            pair, ratio, verdict = "-", "-", "one framework"
        else:
            low, high = v["ci"]
            level = f"{v['confidence'] * 100:.4g} % CI"
            pair, verdict = " / ".join(v["frameworks"]), v["text"]
            ratio = f"{v['ratio']:.3f} ({low:.3f}–{high:.3f}, {level})" if high is not None else f"{v['ratio']:.3f} (no CI)"
        table.append([r["machine"], r["run"], r["setup"], r["commit"], r["versions"], pair, ratio, verdict, flags, acc])
    machines = sorted({r["machine"] for r in rows})
    head = [f"# twincnn report: {len(rows)} result(s) from {len(machines)} machine(s)", "",
            "Time ratio = time of the first framework / time of the second in the steady state, with the "
            "verdict's confidence interval (95 %, or Holm's level where one run judged several pairs). Machines "
            "are compared by these ratios only, never by absolute times.", ""]
    return "\n".join(head + [render(["machine", "run", "setup", "commit", "versions", "pair", "time ratio (CI)",
                                     "verdict", "noise", "test accuracy"], table, markdown=True), ""])


def figure(rows: list[dict], path: Path) -> None:
    """Two panels with one shared row per result: the ratio with its CI and noise band, the accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ratio, ax_acc) = plt.subplots(1, 2, figsize=(12, 1.5 + 0.45 * len(rows)), sharey=True)
    for y, r in enumerate(rows):
        v = r["verdict"]
        if v is None or v["ci"][1] is None:
            continue
        threshold = v.get("noise_threshold", 0.03)
        ax_ratio.fill_betweenx([y - 0.4, y + 0.4], 1 - threshold, 1 + threshold, color="#dddddd",
                               label="noise band" if y == 0 else None)
        ax_ratio.errorbar(v["ratio"], y, xerr=[[v["ratio"] - v["ci"][0]], [v["ci"][1] - v["ratio"]]],
                          fmt="o", color="#2b59c3" if v["significant"] else "#888888", capsize=3)
    ax_ratio.axvline(1, color="black", lw=0.8)
    labels = [f"{r['machine'][:28]} {r['run'][:16]}\n" + (" / ".join(r["verdict"]["frameworks"]) if r["verdict"]
                                                          else "one framework") for r in rows]
    ax_ratio.set_yticks(range(len(rows)), labels, fontsize=7)
    ax_ratio.set(xlabel="time ratio, first / second (bars: the verdict's CI); > 1: the second is faster",
                 title="speed ratio per run")
    names = sorted({k for r in rows for k in r["accuracy"]})
    for i, name in enumerate(names):
        ys = [y for y, r in enumerate(rows) if name in r["accuracy"]]
        ax_acc.plot([rows[y]["accuracy"][name] * 100 for y in ys], ys, "o", label=name, color=plt.cm.tab10(i))
    ax_acc.set(xlabel="test accuracy (%)", title="accuracy per framework")
    for ax in (ax_ratio, ax_acc):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    ax_ratio.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def merge(paths, out, log=print) -> int:
    docs = [load_result(p) for p in find_results(paths)]
    rows = rows_of(docs)
    text = markdown(rows)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    replace_atomically(out / "report.png", lambda p: figure(rows, p))
    replace_atomically(out / "report.md", lambda p: p.write_text(text + "\n![report](report.png)\n"))
    log(text)
    log(f"wrote {out}/report.md, {out}/report.png")
    return 0
