"""PNG figures for a compare run: curves per epoch, epoch times, the schedule, each verdict's ratio with its
interval, confusion matrices side by side."""

from __future__ import annotations

from pathlib import Path

from .schedule import judged

PALETTE = ["#ff6f00", "#2b59c3", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
CELL_NUMBERS_UP_TO = 20  # classes: beyond, the confusion matrices show a colour scale instead of counts


def colors(names) -> dict:
    """One colour per framework, by its place in the run (the first named is always orange)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, written: list) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)


def draw_all(results: dict, out: Path, title: str, verdicts: list | None = None) -> list[str]:
    """Every figure of a compare run into ``out``; the names of the files written."""
    plt = _plt()
    written: list[str] = []
    palette = colors(results)
    _draw_curves(plt, results, palette, title, out, written)
    _draw_epoch_times(plt, results, palette, out, written)
    _draw_schedule(plt, results, palette, out, written)
    if verdicts:
        _draw_verdicts(plt, verdicts, out, written)
    _draw_confusion_matrices(plt, results, out, written)
    return written


def _draw_curves(plt, results: dict, palette: dict, title: str, out: Path, written: list) -> None:
    """Training and test loss, and test accuracy, per epoch (medians over repeats)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        h = r["history"]
        epochs = range(1, len(h["train_loss"]) + 1)
        c = palette.get(name)
        ax_loss.plot(epochs, h["train_loss"], "-o", color=c, label=f"{name} train")
        ax_loss.plot(epochs, h["test_loss"], "--s", color=c, label=f"{name} test")
        ax_acc.plot(epochs, [a * 100 for a in h["test_accuracy"]], "-o", color=c, label=name)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss per epoch")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy per epoch")
    for ax in (ax_loss, ax_acc):
        ax.set_xticks(list(epochs))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(plt, fig, out / "loss_accuracy.png", written)


def _draw_epoch_times(plt, results: dict, palette: dict, out: Path, written: list) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(results)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        times = results[name]["history"]["epoch_seconds"]
        xs = [e + 1 + (i - (len(names) - 1) / 2) * width for e in range(len(times))]
        ax.bar(xs, times, width, color=palette.get(name), label=name)
    ax.set_xticks(range(1, len(times) + 1))
    ax.set(xlabel="epoch (1 includes warm-up)", ylabel="training seconds", title="time per epoch (training only)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    _save(plt, fig, out / "epoch_times.png", written)


def _draw_schedule(plt, results: dict, palette: dict, out: Path, written: list) -> None:
    """Every timed block on one time line per repeat; the blocks the verdict leaves out are pale."""
    names = list(results)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.5 * len(results[names[0]]["runs"])))
    for name in names:
        for repeat, run in enumerate(results[name]["runs"]):
            origin = min(e["start"] for n in names for e in results[n]["runs"][repeat]["schedule"])
            shape = run["history"]["block_seconds"]
            kept = judged(len(shape), len(shape[0]))
            for e in run["schedule"]:
                ax.barh(repeat + 1, e["end"] - e["start"], left=e["start"] - origin, color=palette[name],
                        alpha=1.0 if (e["epoch"], e["block"]) in kept else 0.4, edgecolor="white", linewidth=0.3,
                        label=name if repeat == 0 and e["epoch"] == 1 and e["block"] == 1 else None)
                ax.text(e["start"] - origin + (e["end"] - e["start"]) / 2, repeat + 1, str(e["epoch"]),
                        ha="center", va="center", fontsize=7, color="white")
    ax.set(xlabel="seconds since the repeat started (gaps: evaluation and the other workers' set-up)",
           ylabel="repeat",
           title="the interleaved schedule: each bar one timed block, numbered by its epoch; pale: not judged")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    _save(plt, fig, out / "schedule.png", written)


def _draw_confusion_matrices(plt, results: dict, out: Path, written: list) -> None:
    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        cm = results[name]["confusion_matrix"]
        classes = results[name].get("class_names") or [str(k) for k in range(len(cm))]
        image = ax.imshow(cm, cmap="Blues")
        if len(cm) <= CELL_NUMBERS_UP_TO:
            for t, row in enumerate(cm):
                for p, count in enumerate(row):
                    if count:
                        ax.text(p, t, count, ha="center", va="center", fontsize=6,
                                color="white" if t == p else "black")
        else:  # too many cells to write in: a colour scale says the counts
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ticks = range(len(cm)) if len(cm) <= CELL_NUMBERS_UP_TO else []
        ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true",
               title=f"{name}: {results[name]['test_accuracy']:.2%}")
        if ticks:
            ax.set_xticklabels(classes, rotation=90 if max(map(len, classes)) > 2 else 0, fontsize=7)
            ax.set_yticklabels(classes, fontsize=7)
    _save(plt, fig, out / "confusion_matrices.png", written)


def _draw_verdicts(plt, verdicts: list, out: Path, written: list) -> None:
    """Each verdict's steady-state time ratio with its CI (95 %, or Holm's level), against 1 and the noise band."""
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.6 * len(verdicts)))
    threshold = verdicts[0]["noise_threshold"]
    ax.axvspan(1 - threshold, 1 + threshold, color="0.9", label=f"within noise (±{threshold:.0%})")
    ax.axvline(1, color="0.4", linewidth=1)
    for row, v in enumerate(verdicts):
        low, high = v["ci"]
        if high is not None:
            ax.plot([low, high], [row, row], color="#2b59c3", linewidth=3)
        ax.plot(v["ratio"], row, "o", color="#ff6f00")
    ax.set_yticks(range(len(verdicts)))
    ax.set_yticklabels([" / ".join(v["frameworks"]) for v in verdicts])
    ax.set(xlabel="time ratio, steady state (above 1: the second is faster); bars: the verdict's CI",
           title="verdicts")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    _save(plt, fig, out / "verdicts.png", written)
