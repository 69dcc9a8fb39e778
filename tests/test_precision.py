"""compare --precision's rule, framework-free: when to add a repeat, how many more, what it says and records.
Its coverage is simulated in test_stats.py."""

import math

import pytest

from twincnn.compare import precision


def verdict(ratio, low, high, frameworks=("a", "b")):
    return {"ratio": ratio, "ci": [low, high], "frameworks": list(frameworks), "units": 4, "unit": "repeats",
            "confidence": 0.95}


def test_the_widest_interval_decides_and_an_unbounded_one_is_infinitely_wide():
    narrow, wide = verdict(1.0, 0.99, 1.01), verdict(2.0, 1.8, 2.2)
    assert precision.half_width(narrow) == pytest.approx(0.01)
    assert precision.half_width(wide) == pytest.approx(0.1)  # relative to the ratio
    assert precision.widest([narrow, wide]) == pytest.approx(0.1)
    assert precision.widest([narrow, verdict(1.0, 0.5, None)]) == math.inf
    with pytest.raises(ValueError):
        precision.widest([])  # no verdict, no width: --precision asks for two frameworks or more


@pytest.mark.parametrize("width, target, elapsed, seconds, budget, expected", [
    (0.019, 0.02, 100, [50, 50], 120, precision.REACHED),      # reached: time does not matter
    (0.25, 0.25, 100, [50, 50], 120, precision.REACHED),       # exactly on the target counts as reached
    (0.03, 0.02, 100, [50, 50], 120, precision.OUT_OF_TIME),   # 100 + 50 > 120
    (0.03, 0.02, 100, [10, 20], 120, None),                    # 100 + 20 fits exactly: one more
    (0.03, 0.02, 100, [10, 21], 120, precision.OUT_OF_TIME),   # the longest repeat so far is the estimate
])
def test_another_repeat_runs_only_while_the_target_is_missed_and_it_fits_the_time(width, target, elapsed, seconds,
                                                                                  budget, expected):
    assert precision.stop_reason([verdict(1.0, 1 - width, 1 + width)], target, elapsed, seconds, budget) == expected


def test_the_repeats_still_needed_follow_one_over_the_square_root_of_the_repeats():
    """The log half-width of a Stein interval falls as 1/sqrt(n): ±4 % after 4 repeats is ±2 % after 16."""
    h = math.log(1.04)
    wide = verdict(1.0, math.exp(-h), math.exp(h))
    target = math.sinh(h / 2)  # the relative half-width of the same interval at 4x the repeats
    assert precision.repeats_to_target([wide], 4, target) == 16
    assert precision.repeats_to_target([wide], 4, math.sinh(h / 3)) == 36
    assert precision.repeats_to_target([wide], 4, 0.5) == 4  # reached: no more


def test_progress_and_summary_lines_name_what_was_asked_and_got():
    line = precision.progress_line([verdict(1.1, 1.1 * 0.96, 1.1 * 1.04, ("tensorflow", "torch"))], 0.02, 4, [30.0] * 4)
    assert line.startswith("  after 4 repeats: tensorflow/torch 1.100 ±4.0% (target ±2.0%); about ")
    assert line.endswith(" more repeat(s), " + f"{(precision.repeats_to_target([verdict(1.1, 1.1 * 0.96, 1.1 * 1.04)], 4, 0.02) - 4) * 0.5:.1f}"
                         + " min, at the spread seen so far")
    assert precision.progress_line([verdict(1.0, 0.99, 1.01)], 0.02, 4, [30.0] * 4).endswith("(target ±2.0%): reached")
    on_target = [verdict(1.0, 0.75, 1.25, ("a", "b")), verdict(2.0, 1.9, 2.1, ("a", "c"))]  # ±25 % and ±5 %
    assert precision.progress_line(on_target, 0.25, 4, [30.0] * 4) == (
        "  after 4 repeats: a/b 1.000 ±25.0%; a/c 2.000 ±5.0% (target ±25.0%): reached")
    record = precision.record(0.02, 10, 4, 9, precision.OUT_OF_TIME, [verdict(1.0, 0.97, 1.03)], 600)
    assert record == {"target": 0.02, "max_minutes": 10, "planned_repeats": 4, "repeats": 9,
                      "reached": pytest.approx(0.03), "stopped": precision.OUT_OF_TIME, "minutes": 10.0}
    assert precision.summary(record).startswith("precision: ±2.0% not reached in 10 minutes: ±3.0% after 9 repeats")
    done = precision.record(0.02, 10, 4, 6, precision.REACHED, [verdict(1.0, 0.985, 1.015)], 90)
    assert precision.summary(done) == ("precision: ±2.0% reached (±1.5%) after 6 repeats, 1.5 min; the intervals "
                                       "take their spread from the 4 planned repeats (Stein)")
    unbounded = precision.record(0.02, 10, 3, 3, precision.OUT_OF_TIME, [verdict(1.0, 0.5, None)], 60)
    assert unbounded["reached"] is None
    assert precision.summary(unbounded).startswith("precision: ±2.0% not reached in 10 minutes: no upper bound after 3")
