"""From worker messages to figures: one run per (framework, repeat), medians over repeats, and verdicts."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from .. import stats
from .schedule import judged, judged_text

SCALARS = ("train_seconds", "first_epoch_seconds", "later_epoch_seconds", "median_step_ms",
           "images_per_second", "test_accuracy", "test_loss")


def build_run(job: dict, messages: dict, images: int) -> dict:
    """One worker's run: its epochs (times, curves), its blocks (times, order in the schedule, CPU) and final
    predictions."""
    epochs, blocks = messages["epochs"], messages["blocks"]
    seconds = [e["seconds"] for e in epochs]
    step_medians = [e["median_step_seconds"] for e in epochs if e["median_step_seconds"] is not None]
    return {
        "framework": job["framework"], "label": job["label"], "seed": job["seed"], "variant": job["variant"],
        "threads": messages["ready"]["threads"], "pid": messages["ready"]["pid"],
        # the canonical weights it started from (None: the framework's own initialisers)
        "start_weights_sha256": messages["ready"].get("start_weights_sha256"),
        # what its timed epochs hold besides training steps ("" if nothing): the backend's NOTEBOOK_TIMING
        # in the notebook protocol
        "timing_includes": messages["ready"]["timing_includes"],
        "train_seconds": sum(seconds),
        "first_epoch_seconds": seconds[0],
        "later_epoch_seconds": float(np.mean(seconds[1:])) if len(seconds) > 1 else None,
        "median_step_ms": float(np.median(step_medians) * 1e3) if step_medians else None,
        "images_per_second": images * len(seconds) / sum(seconds),
        "steps": sum(e["steps"] for e in epochs),
        # CPU this worker used while it waited for "go", i.e. while others were timed: ~0 unless it prefetches
        "waiting_cpu_seconds": sum(b["waiting_cpu_seconds"] for b in blocks),
        "test_accuracy": epochs[-1]["test_accuracy"],
        "test_loss": epochs[-1]["test_loss"],
        "history": {"epoch_seconds": seconds,
                    "block_seconds": [[b["seconds"] for b in blocks if b["epoch"] == e["epoch"]] for e in epochs],
                    "train_loss": [e["train_loss"] for e in epochs],
                    "test_loss": [e["test_loss"] for e in epochs],
                    "test_accuracy": [e["test_accuracy"] for e in epochs]},
        # where each epoch's time went, on a CPU (else None): [step number, seconds, CPU seconds] of its
        # slowest step, and its time outside its steps (the notebook protocol's validation pass among it)
        "epoch_breakdown": {"slowest_step": [e["slowest_step"] for e in epochs],
                            "outside_steps_seconds": [e["outside_steps_seconds"] for e in epochs],
                            "major_page_faults": [e["major_page_faults"] for e in epochs]},
        # one entry per timed block, in the order they ran
        "schedule": [{key: b[key] for key in ("epoch", "block", "position", "start", "end", "seconds", "steps",
                                               "cpu_seconds", "waiting_cpu_seconds", "other_cpu_share",
                                               "major_page_faults")}
                     for b in blocks],
        "predictions": np.asarray(messages["done"]["predictions"]),
    }


def epoch_name(breakdown: dict, repeat: int, epoch: int) -> str:
    """Where an epoch ran and, where known, where its time went: an outlier flag names both."""
    name = f"repeat {repeat} epoch {epoch}"
    slowest, outside = breakdown["slowest_step"][epoch - 1], breakdown["outside_steps_seconds"][epoch - 1]
    faults = breakdown["major_page_faults"][epoch - 1]
    if faults:
        name += f"; {faults} major page faults (memory read back from disk)"
    if slowest is None:
        return name
    return (f"{name}; slowest step {slowest[1]:.2f} s (step {slowest[0]}, {slowest[2]:.2f} s of CPU), "
            f"{outside:.2f} s outside its steps")


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def aggregate(runs: list[dict], y_test: np.ndarray, floor_seconds: float | None, class_names=None) -> dict:
    """One framework's figures: medians over repeats, their min-max spread, and the per-run details.
    ``class_names`` name classes 0..K-1 in the reports (None: their numbers, K from the labels and predictions)."""
    out = {name: _median([r[name] for r in runs]) for name in SCALARS}
    out["framework"] = runs[0]["framework"]
    out["steps"] = runs[0]["steps"]
    out["variant"] = runs[0]["variant"]
    out["threads"] = runs[0]["threads"]
    out["spread"] = {name: [float(min(v)), float(max(v))] for name in SCALARS
                     if (v := [r[name] for r in runs if r[name] is not None])}
    out["history"] = {key: np.median([r["history"][key] for r in runs], axis=0).tolist()
                      for key in runs[0]["history"]}
    out["floor_multiple"] = out["train_seconds"] / floor_seconds if floor_seconds else None
    first = runs[0]  # the reports describe the first seed's model
    if class_names is None:
        class_names = [str(k) for k in range(max(int(np.max(y_test)), int(np.max(first["predictions"]))) + 1)]
    labels = list(range(len(class_names)))
    out["class_names"] = list(class_names)
    out["confusion_matrix"] = confusion_matrix(y_test, first["predictions"], labels=labels).tolist()
    out["classification_report"] = classification_report(
        y_test, first["predictions"], labels=labels, target_names=list(class_names), output_dict=True,
        zero_division=0)
    out["classification_report_text"] = classification_report(
        y_test, first["predictions"], labels=labels, target_names=list(class_names), digits=4, zero_division=0)
    out["runs"] = [{k: v for k, v in r.items() if k != "predictions"} for r in runs]
    return out


def steady_blocks(run: dict) -> list[float]:
    """The block times the verdict pairs (``schedule.judged``), in running order."""
    seconds = run["history"]["block_seconds"]
    return [seconds[epoch - 1][block - 1] for epoch, block in judged(len(seconds), len(seconds[0]))]


def verdicts(runs: dict, noise_threshold: float = stats.NOISE_THRESHOLD, pairs=None,
             spread_from: int | None = None) -> list[dict]:
    """The steady-state verdict of each pair (a, b) of labels (default: each framework against the first one
    named), plus labelled extras. With two or more comparisons their family-wise error is held at 5 % by
    Holm's method: each interval is at the confidence level its comparison was tested at (97.5 % or 95 %
    for two comparisons). ``spread_from``: the repeats whose spread the intervals take (stats._spread: a run
    that --precision lengthened), default all."""
    labels = list(runs)
    pairs = pairs or [(labels[0], other) for other in labels[1:]]
    within = "blocks" if len(runs[labels[0]][0]["history"]["block_seconds"][-1]) > 1 else "epochs"
    groups = {pair: [stats.log_ratios(steady_blocks(a), steady_blocks(b)) for a, b in zip(runs[pair[0]], runs[pair[1]])]
              for pair in pairs}
    levels = stats.holm_confidences([stats.p_value(groups[pair], spread_from) for pair in pairs])
    out = []
    for (first, other), level in zip(pairs, levels):
        interval = stats.ratio_interval(groups[first, other], confidence=level, within=within, spread_from=spread_from)
        verdict = stats.judge(first, other, interval, noise_threshold).to_dict()
        repeats = list(zip(runs[first], runs[other]))
        shape = runs[first][0]["history"]["block_seconds"]
        includes = [f"{label}'s time includes {runs[label][0]['timing_includes']}" for label in (first, other)
                    if runs[label][0]["timing_includes"]]
        verdict.update(
            timing_note="; ".join(includes) or None,
            family=f"Holm over {len(groups)} comparisons" if len(groups) > 1 else None,
            epochs=judged_text(len(shape), len(shape[0])),
            first_epoch_ratio=float(np.median([a["first_epoch_seconds"] / b["first_epoch_seconds"]
                                               for a, b in repeats])),
            total_ratio=float(np.median([a["train_seconds"] / b["train_seconds"] for a, b in repeats])),
            accuracy_gap=float(np.median([a["test_accuracy"] - b["test_accuracy"] for a, b in repeats])),
            prediction_agreement=float(np.mean([np.mean(a["predictions"] == b["predictions"])
                                                for a, b in repeats])))
        out.append(verdict)
    return out
