"""The speed verdict: paired log ratios, a Student's t interval on the independent units, and noise flags.
Framework-free.

Data for one pair of frameworks (A, B): for each repeat (a fresh pair of worker processes), the log
ratio log(t_A / t_B) of each steady-state block (an epoch where whole epochs are timed), where A's and
B's blocks ran next to each other in the interleaved schedule. Repeats are the independent level; blocks
within a repeat share a process.

The interval is center +- t(n-1) * sd(repeat means) / sqrt(n) on the n repeat means: the repeat mean
already carries its blocks' noise, so nothing is counted twice, and for equal repeats the interval is
exact under normal noise whatever the split between block and process noise. With one repeat the units
are its blocks, which share one process: process-to-process differences are then not covered, and
compare says so. tests/test_stats.py measures the false-positive rate and the power on simulated machines.

The verdict follows criterion.rs and asv: a CI that contains 1 is "no significant difference"; a CI
that excludes 1 but lies within the noise threshold is "difference within noise"; anything else names
the faster framework with its ratio and CI. Printed bounds are rounded outward, with as many digits as
it takes for the printed interval to lead to the same outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
# A ratio within 1 +- 3 % is not worth a claim between frameworks. (criterion.rs's noise threshold defaults
# to 1 %, for one function's microbenchmark on a quiet machine; whole training epochs on shared cores vary more.)
NOISE_THRESHOLD = 0.03
CV_LIMIT = 0.10  # coefficient of variation of epoch times that marks a run as noisy
OUTLIER_LIMIT = 0.50  # an epoch this far from its run's mean (relative) marks the run as noisy
MATMUL_DRIFT_LIMIT = 0.10  # matmul rate before vs after training, relative
STEAL_LIMIT = 0.02  # share of CPU time stolen by the hypervisor during the run
BUSY_LIMIT = 0.25  # share of the CPU busy in the second before training (twincnn itself is idle then)
WAITING_CPU_LIMIT = 0.01  # CPU a waiting worker used, as a share of its own training time
OTHER_LOAD_LIMIT = 0.10  # share of all CPU time other processes took during a timed epoch


def log_ratios(times_a, times_b) -> np.ndarray:
    """Paired log ratios log(a / b); refuses unpaired or non-positive times (they would be a bug)."""
    # float: equivalent for the Python numbers that epoch times are, kept for other array types
    a, b = np.asarray(times_a, float), np.asarray(times_b, float)  # pragma: no mutate
    if a.shape != b.shape:
        raise ValueError(f"unpaired epoch times: {a.shape} vs {b.shape}")
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("epoch times must be positive")
    return np.log(a) - np.log(b)


@dataclass(frozen=True)
class Interval:
    ratio: float  # exp(mean of repeat means of the log ratios): time of A / time of B
    low: float
    high: float
    units: int  # independent units behind the interval
    unit: str  # "repeats"; with one repeat, what it pairs: "epochs" or "blocks"
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        """Relative half-width of the interval (0.05 = +-5 %)."""
        return (self.high - self.low) / 2 / self.ratio


def interval_of(verdict: dict) -> Interval:
    """The Interval a verdict (Verdict.to_dict(), as results.json holds it) was judged on; its "ci" has None for
    an unbounded upper end."""
    low, high = verdict["ci"]
    return Interval(verdict["ratio"], low, math.inf if high is None else high, verdict["units"], verdict["unit"],
                    verdict["confidence"])


def _units(groups, within: str) -> tuple[np.ndarray, str]:
    """The independent units: one mean log ratio per repeat (the paired values where there is one repeat)."""
    groups = [np.asarray(g, float) for g in groups if len(g)]  # pragma: no mutate (float: as in log_ratios)
    if not groups:
        raise ValueError("no paired blocks to judge")
    return (np.array([g.mean() for g in groups]), "repeats") if len(groups) > 1 else (groups[0], within)


def _spread(values: np.ndarray, spread_from: int | None) -> tuple[float, int]:
    """(standard deviation, its degrees of freedom): of every unit, or of the first ``spread_from`` only. The
    second is Stein's two-stage interval: where the number of units was decided from the spread of the first
    ones (--precision), t on that spread covers the ratio exactly, which the spread of all of them does not (a
    run would stop on a spread that happened to come out small)."""
    first = values[:spread_from]  # [:None]: every unit
    return float(first.std(ddof=1)), len(first) - 1


def ratio_interval(groups, confidence: float = CONFIDENCE, within: str = "epochs",
                   spread_from: int | None = None) -> Interval:
    """CI of the time ratio from per-repeat lists of paired log ratios: Student's t on the repeat means (on
    the paired units inside the repeat, named ``within``, where there is one repeat); their spread from the
    first ``spread_from`` repeats where given (_spread)."""
    from scipy import stats

    values, unit = _units(groups, within)
    units, center = len(values), float(values.mean())
    if units < 2:  # one epoch of one repeat: nothing to estimate a spread from
        return Interval(math.exp(center), 0.0, math.inf, units, unit, confidence)
    spread, dof = _spread(values, spread_from)
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, dof)) * spread / math.sqrt(units)
    return Interval(math.exp(center), math.exp(center - half), math.exp(center + half), units, unit, confidence)


def p_value(groups, spread_from: int | None = None) -> float:
    """Two-sided p-value of "equal speed" on the same units and spread as ratio_interval (1.0 where no spread
    exists)."""
    from scipy import stats

    values, _ = _units(groups, "epochs")  # pragma: no mutate (the unit's name is not used here)
    if len(values) < 2:
        return 1.0
    spread, dof = _spread(values, spread_from)
    if spread == 0:
        return 0.0 if values.mean() != 0 else 1.0
    t = float(values.mean()) / (spread / math.sqrt(len(values)))
    return float(2 * stats.t.sf(abs(t), dof))


def holm_confidences(p_values, confidence: float = CONFIDENCE) -> list[float]:
    """Holm's step-down over several comparisons, as a confidence level per comparison: the smallest p is
    tested at alpha/m, the next at alpha/(m-1), ...; from the first comparison that is not significant on,
    every later one keeps that comparison's level. An interval at its comparison's level then excludes 1
    exactly when Holm rejects "equal speed", and the family-wise error rate stays at most alpha."""
    alpha, m = 1 - confidence, len(p_values)
    levels, stopped = [0.0] * m, None  # pragma: no mutate (every level is set below)
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        level = alpha / (m - rank) if stopped is None else stopped
        if stopped is None and p_values[index] > level:
            stopped = level
        levels[index] = 1 - level
    return levels


def confidence_label(confidence: float) -> str:
    """0.95 -> '95 %', 0.975 -> '97.5 %'."""
    return f"{confidence * 100:.4g} %"


# The outcomes a verdict can have, as results.json records them.
FASTER, NO_DIFFERENCE, WITHIN_NOISE, UNJUDGED = ("faster", "no significant difference", "within noise",
                                                 "cannot be judged")


@dataclass(frozen=True)
class Verdict:
    frameworks: tuple  # (A, B): the ratio is time of A / time of B
    interval: Interval
    noise_threshold: float
    outcome: str  # one of FASTER, NO_DIFFERENCE, WITHIN_NOISE, UNJUDGED
    text: str

    @property
    def significant(self) -> bool:
        return self.outcome == FASTER

    def to_dict(self) -> dict:
        iv = self.interval
        high = iv.high if math.isfinite(iv.high) else None  # JSON has no infinity
        return {"frameworks": list(self.frameworks), "ratio": iv.ratio, "ci": [iv.low, high],
                "confidence": iv.confidence,
                "outcome": self.outcome, "significant": self.significant, "text": self.text, "units": iv.units,
                "unit": iv.unit, "noise_threshold": self.noise_threshold}


def outcome_of(low: float, high: float, noise_threshold: float = NOISE_THRESHOLD) -> str:
    """The verdict rule on a time-ratio interval (bounds on the rule's edges count as inside)."""
    if not math.isfinite(high):
        return UNJUDGED
    if low <= 1 <= high:
        return NO_DIFFERENCE
    if 1 - noise_threshold <= low and high <= 1 + noise_threshold:
        return WITHIN_NOISE
    return FASTER


def printed_bounds(low: float, high: float, keeps) -> str:
    """'low–high' rounded outward, with the fewest digits (2 at least) for which ``keeps(low, high)`` holds
    of the printed numbers: a printed interval never leads to another outcome than the exact one."""
    for digits in range(2, 16):  # pragma: no mutate (a float64 near 1 has no 16th digit to show)
        scale = 10 ** digits
        # round(.., 6) first: 1.09 * 100 is 109.00000000000001 in binary, which must not print as 1.10; a
        # guard of 7 places does that too (equivalent mutants, left to survive)
        lo, hi = math.floor(round(low * scale, 6)) / scale, math.ceil(round(high * scale, 6)) / scale
        if keeps(lo, hi):
            break
    return f"{lo:.{digits}f}–{hi:.{digits}f}"


def judge(a: str, b: str, interval: Interval, noise_threshold: float = NOISE_THRESHOLD) -> Verdict:
    """The verdict. ratio = time(a) / time(b): above 1 means b is faster."""
    outcome = outcome_of(interval.low, interval.high, noise_threshold)
    if outcome == UNJUDGED:
        return Verdict((a, b), interval, noise_threshold, outcome,
                       f"{a} vs {b}: one timed epoch cannot be judged (time ratio {interval.ratio:.3f}); "
                       f"use --repeats 3 or more")
    if outcome != FASTER:
        ci = printed_bounds(interval.low, interval.high,
                            lambda lo, hi: outcome_of(lo, hi, noise_threshold) == outcome)
        detail = {NO_DIFFERENCE: "no significant difference", WITHIN_NOISE: "difference within noise"}[outcome]
        band = f", inside ±{noise_threshold:.0%}" if outcome == WITHIN_NOISE else ""
        return Verdict((a, b), interval, noise_threshold, outcome,
                       f"{a} vs {b}: {detail} (time ratio {interval.ratio:.3f}, "
                       f"{confidence_label(interval.confidence)} CI {ci}{band})")
    # ratio == 1 lies inside any interval around it, so it never gets here: > and >= agree
    if interval.ratio > 1:  # pragma: no mutate (b takes less time)
        speed, lo, hi = interval.ratio, interval.low, interval.high
        faster, slower = b, a
    else:
        speed, lo, hi = 1 / interval.ratio, 1 / interval.high, 1 / interval.low
        faster, slower = a, b
    # speed-ups: the printed interval must still exclude 1 and reach beyond the noise band
    ci = printed_bounds(lo, hi, lambda lo, hi: outcome_of(lo, hi, noise_threshold) == FASTER)
    return Verdict((a, b), interval, noise_threshold, outcome,
                   f"{faster} {speed:.2f}× faster than {slower} ({confidence_label(interval.confidence)} CI {ci})")


def repeats_for(interval: Interval, repeats: int, target: float = NOISE_THRESHOLD) -> int:
    """Repeats that would bring the CI's half-width to ``target``: the smallest n whose t(n-1) s / sqrt(n)
    reaches it, with s the spread of repeat means this interval implies. A run without a spread between
    repeats (one repeat, or one epoch) needs 3 or more."""
    from scipy import stats

    if interval.unit != "repeats" or not math.isfinite(interval.high):
        return max(3, repeats + 1)
    if interval.half_width <= target:
        return repeats
    # Equivalent mutants left to survive: 1 + confidence (t's sign cancels between the spread and the loop)
    # and >= target below (a half-width exactly on the target).
    t = lambda n: float(stats.t.ppf(1 - (1 - interval.confidence) / 2, n - 1))  # noqa: E731
    spread = interval.half_width * math.sqrt(interval.units) / t(interval.units)
    n = max(repeats, interval.units) + 1
    while t(n) * spread / math.sqrt(n) > target and n < 10_000:
        n += 1
    return n


def noise_flags(epoch_times: dict, matmul_before: float | None = None, matmul_after: float | None = None,
                machine_before: dict | None = None, machine_after: dict | None = None,
                waiting_cpu: dict | None = None) -> list[str]:
    """Reasons to distrust a run, each with its numbers. epoch_times: {label: [seconds, ...]}, or
    {label: {"repeat 2, epoch 2": seconds, ...}} to name an outlier by where it ran; waiting_cpu:
    {label: (CPU seconds used while waiting for its epochs, seconds of its own epochs)}."""
    flags = []
    for label, (waiting, training) in (waiting_cpu or {}).items():
        if training > 0 and waiting >= WAITING_CPU_LIMIT * training:
            flags.append(f"{label}: used {waiting:.2f} s of CPU while waiting, inside other workers' epochs "
                         f"({waiting / training:.1%} of its own training time)")
    for label, times in epoch_times.items():
        where = list(times) if isinstance(times, dict) else None
        times = np.asarray(list(times.values()) if where else times, float)  # pragma: no mutate (float: as in log_ratios)
        if len(times) < 2:
            continue
        mean = times.mean()
        cv = times.std(ddof=1) / mean
        if cv >= CV_LIMIT:
            flags.append(f"{label}: epoch times vary by {cv:.0%} (coefficient of variation ≥ {CV_LIMIT:.0%})")
        worst = int(np.argmax(np.abs(times - mean)))
        if abs(times[worst] - mean) >= OUTLIER_LIMIT * mean:
            # the times may pool several repeats' steady-state epochs, so say which of them, not "epoch N"
            named = f" ({where[worst]})" if where else ""
            flags.append(f"{label}: epoch time {worst + 1} of {len(times)}{named} was {times[worst]:.2f} s against "
                         f"a mean of {mean:.2f} s")
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


def load_flags(runs: dict) -> list[str]:
    """Other processes' CPU use during the timed blocks ({label: [run, ...]}, each run's "schedule" holding
    its blocks' seconds and other_cpu_share): one flag naming the epochs where it reached OTHER_LOAD_LIMIT."""
    loaded = []
    for label, label_runs in runs.items():
        for repeat, run in enumerate(label_runs, 1):
            for epoch in sorted({b["epoch"] for b in run["schedule"]}):
                blocks = [b for b in run["schedule"] if b["epoch"] == epoch and b["other_cpu_share"] is not None]
                seconds = sum(b["seconds"] for b in blocks)
                if seconds > 0:
                    share = sum(b["other_cpu_share"] * b["seconds"] for b in blocks) / seconds
                    if share >= OTHER_LOAD_LIMIT:
                        loaded.append((share, f"{label} repeat {repeat} epoch {epoch}"))
    if not loaded:
        return []
    loaded.sort(reverse=True)
    named = ", ".join(f"{where} {share:.0%}" for share, where in loaded[:3])
    more = f" and {len(loaded) - 3} more" if len(loaded) > 3 else ""
    return [f"other processes took ≥ {OTHER_LOAD_LIMIT:.0%} of the CPU during {len(loaded)} timed epoch(s): "
            f"{named}{more}"]


def repeat_load(runs: list[dict]) -> float | None:
    """The share of the CPU other processes took during one repeat's timed blocks (its runs, one per worker),
    averaged over the blocks by their durations; None where it was not measured."""
    blocks = [b for run in runs for b in run["schedule"] if b["other_cpu_share"] is not None]
    seconds = sum(b["seconds"] for b in blocks)
    return sum(b["other_cpu_share"] * b["seconds"] for b in blocks) / seconds if seconds > 0 else None


def load_advice(runs: dict) -> list[str]:
    """Advice where other processes took OTHER_LOAD_LIMIT or more of the CPU during a repeat ({label: [run, ...]}):
    what their load added to the spread between repeats is no property of the frameworks."""
    repeats = zip(*runs.values())
    loaded = [(i, share) for i, share in enumerate((repeat_load(list(r)) for r in repeats), 1)
              if share is not None and share >= OTHER_LOAD_LIMIT]
    if not loaded:
        return []
    named = ", ".join(f"{i} ({share:.0%})" for i, share in loaded)
    return [f"other processes took ≥ {OTHER_LOAD_LIMIT:.0%} of the CPU during repeat(s) {named}: their load widens "
            f"the interval; rerun with the machine otherwise idle rather than adding repeats"]


def steal_share(before: dict, after: dict) -> float | None:
    """Share of CPU time stolen between two /proc/stat readings (None where not available)."""
    try:
        total = after["cpu_jiffies"] - before["cpu_jiffies"]
        stolen = after["steal_jiffies"] - before["steal_jiffies"]
    except (KeyError, TypeError):
        return None
    return stolen / total if total > 0 else None
