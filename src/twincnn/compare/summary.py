"""Aggregate repeated runs (median, min-max) and compute the difference between frameworks."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

SCALARS = ("train_seconds", "first_epoch_seconds", "later_epoch_seconds", "median_step_ms",
           "images_per_second", "test_accuracy", "test_loss")


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def aggregate(runs: list[dict], y_test: np.ndarray, floor_seconds: float | None) -> dict:
    """One framework's figures: medians over runs, their min-max spread, and the per-run details."""
    out = {name: _median([r[name] for r in runs]) for name in SCALARS}
    out["steps"] = runs[0]["steps"]
    out["variant"] = runs[0]["variant"]
    out["threads"] = runs[0]["threads"]
    out["spread"] = {name: [float(min(v)), float(max(v))] for name in SCALARS
                     if (v := [r[name] for r in runs if r[name] is not None])}
    out["history"] = {key: np.median([r["history"][key] for r in runs], axis=0).tolist()
                      for key in runs[0]["history"]}
    out["floor_multiple"] = out["train_seconds"] / floor_seconds if floor_seconds else None
    first = runs[0]  # the reports describe the first seed's model
    out["confusion_matrix"] = confusion_matrix(y_test, first["predictions"], labels=range(10)).tolist()
    out["classification_report"] = classification_report(
        y_test, first["predictions"], labels=list(range(10)), digits=4, output_dict=True, zero_division=0)
    out["classification_report_text"] = classification_report(
        y_test, first["predictions"], labels=list(range(10)), digits=4, zero_division=0)
    out["runs"] = [{k: v for k, v in r.items() if k != "predictions"} for r in runs]
    return out


def difference(results: dict, runs: dict) -> dict | None:
    """A vs B for the first two frameworks: time ratio, accuracy gap, and how often they predict alike."""
    names = list(results)
    if len(names) < 2:
        return None
    a, b = names[:2]
    ra, rb = results[a], results[b]
    agree = float(np.mean([np.mean(x["predictions"] == y["predictions"]) for x, y in zip(runs[a], runs[b])]))
    return {
        "frameworks": [a, b],
        "train_seconds_ratio": ra["train_seconds"] / rb["train_seconds"],
        "faster": a if ra["train_seconds"] < rb["train_seconds"] else b,
        "speedup_percent": 100 * (1 - min(ra["train_seconds"], rb["train_seconds"])
                                  / max(ra["train_seconds"], rb["train_seconds"])),
        "accuracy_gap": ra["test_accuracy"] - rb["test_accuracy"],
        "prediction_agreement": agree,
    }
