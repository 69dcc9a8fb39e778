"""The speed verdict: paired log ratios, a hierarchical bootstrap CI, and noise flags. Framework-free.

Data for one pair of frameworks (A, B): for each repeat (a fresh pair of worker processes), the log
ratio log(t_A / t_B) of each steady-state epoch, where A's and B's epochs ran next to each other in the
interleaved schedule. Repeats are the independent level; epochs within a repeat share a process.

The CI's spread comes from a hierarchical bootstrap: resample repeats, then epochs within each chosen
repeat, and take the standard deviation of the mean of repeat means. With a handful of repeats a
percentile interval would be far too narrow (its tails are the extremes of three values), so the
interval is center +- t(n-1) * SE * sqrt(n / (n-1)), Student's critical value for n independent units
(repeats; epochs when there is a single repeat). Resampling both levels counts the epoch noise twice,
so the interval errs on the wide side when a repeat has several epochs; tests/test_stats.py measures
its false-positive rate and power on simulated machines.

The verdict follows criterion.rs and asv: a CI that contains 1 is "no significant difference"; a CI
that excludes 1 but lies within the noise threshold is "difference within noise"; anything else names
the faster framework with its ratio and CI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
NOISE_THRESHOLD = 0.03  # a ratio within 1 +- 3 % is not worth a claim (criterion.rs's default noise)
BOOTSTRAP_SAMPLES = 10_000
CV_LIMIT = 0.10  # coefficient of variation of epoch times that marks a run as noisy
OUTLIER_LIMIT = 0.50  # an epoch this far from its run's mean (relative) marks the run as noisy
MATMUL_DRIFT_LIMIT = 0.10  # matmul rate before vs after training, relative
STEAL_LIMIT = 0.02  # share of CPU time stolen by the hypervisor during the run
BUSY_LIMIT = 0.25  # share of the CPU busy in the second before training (twincnn itself is idle then)


def log_ratios(times_a, times_b) -> np.ndarray:
    """Paired log ratios log(a / b); refuses unpaired or non-positive times (they would be a bug)."""
    # float: equivalent for the Python numbers that epoch times are, kept for other array types
    a, b = np.asarray(times_a, float), np.asarray(times_b, float)  # pragma: no mutate
    if a.shape != b.shape:
        raise ValueError(f"unpaired epoch times: {a.shape} vs {b.shape}")
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("epoch times must be positive")
    return np.log(a) - np.log(b)


def bootstrap_means(groups, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the mean of group means: resample groups, then values within each."""
    groups = [np.asarray(g, float) for g in groups if len(g)]  # pragma: no mutate (float: as in log_ratios)
    if not groups:
        raise ValueError("no values to resample")
    rng = np.random.default_rng(seed)
    width = max(len(g) for g in groups)
    # Pad to a rectangle; a draw within group g picks among its own len(g) values only.
    values = np.array([np.pad(g, (0, width - len(g))) for g in groups])
    sizes = np.array([len(g) for g in groups])
    chosen = rng.integers(len(groups), size=(samples, len(groups)))
    picks = np.floor(rng.random((samples, len(groups), width)) * sizes[chosen][..., None]).astype(int)
    drawn = values[chosen[..., None], picks]
    counted = np.arange(width) < sizes[chosen][..., None]  # only the first len(g) draws count
    return ((drawn * counted).sum(2) / counted.sum(2)).mean(1)


@dataclass(frozen=True)
class Interval:
    ratio: float  # exp(mean of repeat means of the log ratios): time of A / time of B
    low: float
    high: float
    units: int  # independent units behind the interval
    unit: str  # "repeats" or "epochs"

    @property
    def half_width(self) -> float:
        """Relative half-width of the interval (0.05 = +-5 %)."""
        return (self.high - self.low) / 2 / self.ratio


def ratio_interval(groups, confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES,
                   seed: int = 0) -> Interval:
    """CI of the time ratio from per-repeat lists of paired log ratios."""
    from scipy import stats

    groups = [np.asarray(g, float) for g in groups if len(g)]  # pragma: no mutate (float: as in log_ratios)
    if not groups:
        raise ValueError("no paired epochs to judge")
    units, unit = (len(groups), "repeats") if len(groups) > 1 else (len(groups[0]), "epochs")
    center = float(np.mean([g.mean() for g in groups]))
    if units < 2:  # one epoch of one repeat: nothing to estimate a spread from
        return Interval(math.exp(center), 0.0, math.inf, units, unit)
    se = float(bootstrap_means(groups, samples, seed).std()) * math.sqrt(units / (units - 1))
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, units - 1)) * se
    return Interval(math.exp(center), math.exp(center - half), math.exp(center + half), units, unit)


@dataclass(frozen=True)
class Verdict:
    frameworks: tuple  # (A, B): the ratio is time of A / time of B
    interval: Interval
    noise_threshold: float
    significant: bool
    text: str

    def to_dict(self) -> dict:
        iv = self.interval
        high = iv.high if math.isfinite(iv.high) else None  # JSON has no infinity
        return {"frameworks": list(self.frameworks), "ratio": iv.ratio, "ci95": [iv.low, high],
                "significant": self.significant, "text": self.text, "units": iv.units, "unit": iv.unit,
                "noise_threshold": self.noise_threshold}


def judge(a: str, b: str, interval: Interval, noise_threshold: float = NOISE_THRESHOLD) -> Verdict:
    """The verdict rule. ratio = time(a) / time(b): above 1 means b is faster."""
    if not math.isfinite(interval.high):
        return Verdict((a, b), interval, noise_threshold, False,
                       f"{a} vs {b}: one timed epoch cannot be judged (time ratio {interval.ratio:.3f}); "
                       f"use --repeats 3 or more")
    ci = f"95 % CI {interval.low:.2f}–{interval.high:.2f}"
    if interval.low <= 1 <= interval.high:
        return Verdict((a, b), interval, noise_threshold, False,
                       f"{a} vs {b}: no significant difference (time ratio {interval.ratio:.3f}, {ci})")
    if 1 - noise_threshold <= interval.low and interval.high <= 1 + noise_threshold:
        return Verdict((a, b), interval, noise_threshold, False,
                       f"{a} vs {b}: difference within noise (time ratio {interval.ratio:.3f}, {ci}, "
                       f"inside ±{noise_threshold:.0%})")
    # ratio == 1 lies inside any interval around it, so it never gets here: > and >= agree
    if interval.ratio > 1:  # pragma: no mutate (b takes less time)
        speed, lo, hi = interval.ratio, interval.low, interval.high
        faster, slower = b, a
    else:
        speed, lo, hi = 1 / interval.ratio, 1 / interval.high, 1 / interval.low
        faster, slower = a, b
    return Verdict((a, b), interval, noise_threshold, True,
                   f"{faster} {speed:.2f}× faster than {slower} (95 % CI {lo:.2f}–{hi:.2f})")


def repeats_for(interval: Interval, repeats: int, target: float = NOISE_THRESHOLD) -> int:
    """Repeats that would shrink the CI's half-width to ``target`` (half-width ~ 1/sqrt(repeats))."""
    if not math.isfinite(interval.high):
        return max(3, repeats + 1)
    if interval.half_width <= target:
        return repeats
    return math.ceil(max(repeats, 2) * (interval.half_width / target) ** 2)  # > repeats: half_width > target


def noise_flags(epoch_times: dict, matmul_before: float | None = None, matmul_after: float | None = None,
                machine_before: dict | None = None, machine_after: dict | None = None) -> list[str]:
    """Reasons to distrust a run, each with its numbers. epoch_times: {label: [seconds, ...]} per run."""
    flags = []
    for label, times in epoch_times.items():
        times = np.asarray(times, float)  # pragma: no mutate (float: as in log_ratios)
        if len(times) < 2:
            continue
        mean = times.mean()
        cv = times.std(ddof=1) / mean
        if cv >= CV_LIMIT:
            flags.append(f"{label}: epoch times vary by {cv:.0%} (coefficient of variation ≥ {CV_LIMIT:.0%})")
        worst = int(np.argmax(np.abs(times - mean)))
        if abs(times[worst] - mean) >= OUTLIER_LIMIT * mean:
            # the times may pool several repeats' steady-state epochs, so say which of them, not "epoch N"
            flags.append(f"{label}: epoch time {worst + 1} of {len(times)} was {times[worst]:.2f} s against a "
                         f"mean of {mean:.2f} s")
    if matmul_before and matmul_after:
        drift = matmul_after / matmul_before - 1
        # |after / before - 1| is never exactly 0.1 in binary floating point: > and >= agree
        if abs(drift) > MATMUL_DRIFT_LIMIT:  # pragma: no mutate
            flags.append(f"matmul rate moved {drift:+.0%} during the run ({matmul_before:.0f} -> "
                         f"{matmul_after:.0f} GFLOP/s)")
    if machine_before and machine_after:
        steal = steal_share(machine_before, machine_after)
        if steal is not None and steal >= STEAL_LIMIT:
            flags.append(f"the hypervisor took {steal:.1%} of the CPU time (steal)")
        busy = machine_before.get("busy_share")
        if busy is not None and busy >= BUSY_LIMIT:
            load = machine_before.get("loadavg_1min")
            flags.append(f"other work used {busy:.0%} of the CPU just before training"
                         + (f" (load average {load:.2f})" if load is not None else ""))
    return flags


def steal_share(before: dict, after: dict) -> float | None:
    """Share of CPU time stolen between two /proc/stat readings (None where not available)."""
    try:
        total = after["cpu_jiffies"] - before["cpu_jiffies"]
        stolen = after["steal_jiffies"] - before["steal_jiffies"]
    except (KeyError, TypeError):
        return None
    return stolen / total if total > 0 else None
