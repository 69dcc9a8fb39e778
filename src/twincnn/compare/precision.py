"""Repeats added until every verdict's interval is as narrow as asked (--precision), or the time allowed
(--max-minutes) would be passed by one more repeat.

The decision to go on reads the intervals' widths only, never where they lie against 1 or the noise band, and
the intervals take their spread from the planned repeats alone (Stein's two-stage interval, stats._spread): the
width then falls with every repeat as 1/sqrt(repeats), the number of repeats is fixed by the planned ones, and
the interval covers the ratio as often as its level says. An interval on the spread of every repeat would let a
run stop where that spread happened to come out small. docs/verdict.md gives the simulated false-positive rate
and coverage.
"""

from __future__ import annotations

import math

from .. import stats

REACHED, OUT_OF_TIME = "reached", "out of time"
DEFAULT_MAX_MINUTES = 30.0
MIN_REPEATS = 3  # an interval over fewer repeats has too few degrees of freedom to stop on its width


def half_width(verdict: dict) -> float:
    """A verdict's relative half-width (0.05: ±5 %), at its own confidence (Holm's where it is in a family);
    infinite for an interval without an upper bound (one timed unit)."""
    return stats.interval_of(verdict).half_width


def widest(verdicts: list[dict]) -> float:
    """The largest half-width among the verdicts: the one the target waits for."""
    return max(half_width(v) for v in verdicts)


def stop_reason(verdicts: list[dict], target: float, elapsed: float, repeat_seconds: list[float],
                budget: float) -> str | None:
    """REACHED once every half-width is at most ``target``; OUT_OF_TIME where one more repeat, taking as long as
    the longest so far, would end past ``budget`` seconds; None: run another."""
    if widest(verdicts) <= target:
        return REACHED
    if elapsed + max(repeat_seconds) > budget:
        return OUT_OF_TIME
    return None


def repeats_to_target(verdicts: list[dict], repeats: int, target: float) -> int:
    """Repeats that bring the widest interval to ``target``. The intervals take their spread from the planned
    repeats (stats._spread), so their log half-width falls as 1/sqrt(repeats) and this is exact."""
    needed = repeats * (math.asinh(widest(verdicts)) / math.asinh(target)) ** 2
    return max(repeats, math.ceil(needed - 1e-9))


def progress_line(verdicts: list[dict], target: float, repeats: int, repeat_seconds: list[float]) -> str:
    """After a repeat: each pair's ratio and half-width against the target, and the time to reach it."""
    pairs = "; ".join(f"{'/'.join(v['frameworks'])} {v['ratio']:.3f} ±{half_width(v):.1%}" for v in verdicts)
    line = f"  after {repeats} repeats: {pairs} (target ±{target:.1%})"
    if widest(verdicts) <= target:
        return line + ": reached"
    more = repeats_to_target(verdicts, repeats, target) - repeats
    seconds = more * sum(repeat_seconds) / len(repeat_seconds)
    return line + f"; about {more} more repeat(s), {seconds / 60:.1f} min, at the spread seen so far"


def record(target: float, max_minutes: float, planned: int, repeats: int, reason: str, verdicts: list[dict],
           elapsed: float) -> dict:
    """What results.json keeps of a run asked for a precision."""
    reached = widest(verdicts)
    return {"target": target, "max_minutes": max_minutes, "planned_repeats": planned, "repeats": repeats,
            "reached": reached if math.isfinite(reached) else None, "stopped": reason, "minutes": elapsed / 60}


def summary(record: dict) -> str:
    """One line for the verdicts: the precision reached, or that it was not within the time allowed."""
    reached = record["reached"]
    shown = "no upper bound" if reached is None else f"±{reached:.1%}"
    spread = f"; the intervals take their spread from the {record['planned_repeats']} planned repeats (Stein)"
    if record["stopped"] == REACHED:
        return (f"precision: ±{record['target']:.1%} reached ({shown}) after {record['repeats']} repeats, "
                f"{record['minutes']:.1f} min{spread}")
    return (f"precision: ±{record['target']:.1%} not reached in {record['max_minutes']:g} minutes: {shown} after "
            f"{record['repeats']} repeats (another repeat would have passed the time allowed){spread}")
