"""The verdict statistics on synthetic epoch times: deterministic, fast, and framework-free.

The simulated machine: each worker process has its own speed (process effect), each epoch its own noise,
and the whole machine may slow down through the run (drift). Epochs are timed in schedule order, so a
drift hits whichever framework runs later.
"""

import math

import numpy as np
import pytest

from twincnn import stats
from twincnn.compare.schedule import interleaved, sequential

def simulate(rng, true_a=1.0, true_b=1.0, epoch_noise=0.02, process_noise=0.01, drift=0.0, repeats=3,
             epochs=5, schedule="interleaved"):
    """Per-repeat paired log ratios of steady-state epochs, timed as the schedule orders them."""
    groups = []
    for repeat in range(repeats):
        order = interleaved(2, epochs, repeat) if schedule == "interleaved" else sequential(2, epochs)
        speed = np.exp(rng.normal(0, process_noise, 2))  # each fresh process its own speed
        base = (true_a, true_b)
        times = {}
        for position, (epoch, slot) in enumerate(order):
            slowdown = 1 + drift * position / (len(order) - 1)  # the machine gets slower through the run
            times[epoch, slot] = base[slot] * speed[slot] * slowdown * math.exp(rng.normal(0, epoch_noise))
        a = [times[e, 0] for e in range(2, epochs + 1)]  # epoch 1 is warm-up: the verdict skips it
        b = [times[e, 1] for e in range(2, epochs + 1)]
        groups.append(stats.log_ratios(a, b))
    return groups


def flagged_rate(runs, seed=1, **kwargs):
    rng = np.random.default_rng(seed)
    flagged = 0
    for i in range(runs):
        interval = stats.ratio_interval(simulate(rng, **kwargs), samples=1000, seed=i)
        flagged += not (interval.low <= 1 <= interval.high)
    return flagged / runs


@pytest.mark.parametrize("repeats,epochs", [(3, 2), (5, 2), (2, 5), (3, 5), (5, 5)])
def test_equal_frameworks_are_flagged_in_at_most_5_percent_of_runs(repeats, epochs):
    """The A/A false-positive rate: a CI that excludes 1 although both frameworks are equally fast.
    (3, 2) is compare's default: one steady-state epoch per repeat, the hardest case for an interval."""
    rate = flagged_rate(400, repeats=repeats, epochs=epochs)
    print(f"A/A false-positive rate, {repeats} repeats x {epochs} epochs, 2 % epoch noise, 1 % process "
          f"noise: {rate:.1%} of 400 simulated runs")
    assert rate <= 0.075  # 5 % nominal; 400 runs put the estimate within about +-2 points


def test_one_repeat_covers_epoch_noise_only():
    """With one process per framework a process-to-process difference looks like a real one: the
    report asks for repeats. Without process noise the epoch-level interval is calibrated."""
    no_process = flagged_rate(400, repeats=1, process_noise=0.0)
    with_process = flagged_rate(400, repeats=1, process_noise=0.01)
    print(f"1 repeat x 5 epochs: flagged {no_process:.1%} without process noise, {with_process:.1%} with 1 %")
    assert no_process <= 0.075 and with_process > no_process


@pytest.mark.parametrize("repeats,epochs,minimum", [(3, 2, 0.6), (3, 5, 0.9), (5, 2, 0.95)])
def test_a_10_percent_difference_under_2_percent_noise_is_found(repeats, epochs, minimum):
    rng = np.random.default_rng(7)
    found = 0
    for i in range(200):
        groups = simulate(rng, true_a=1.10, true_b=1.0, repeats=repeats, epochs=epochs)
        verdict = stats.judge("a", "b", stats.ratio_interval(groups, samples=1000, seed=i))
        found += verdict.significant and verdict.text.startswith("b 1.")  # b is the faster one
    print(f"10 % difference, {repeats} repeats x {epochs} epochs: found in {found} of 200 simulated runs")
    assert found >= minimum * 200


def test_interleaving_cancels_drift_that_a_sequential_run_misjudges():
    """The machine slows by 30 % through the run; both frameworks are equally fast."""
    rng = np.random.default_rng(3)
    inter = stats.ratio_interval(simulate(rng, drift=0.3, schedule="interleaved"), seed=0)
    seq = stats.ratio_interval(simulate(rng, drift=0.3, schedule="sequential"), seed=0)
    print(f"interleaved: {inter}\nsequential:  {seq}")
    assert stats.judge("a", "b", inter).significant is False
    verdict = stats.judge("a", "b", seq)
    assert verdict.significant and verdict.text.startswith("a ")  # a ran first, so looked faster
    assert seq.high < 0.95


def test_interleaved_schedule_alternates_and_sequential_does_not():
    assert interleaved(2, 4, repeat=0) == [(1, 0), (1, 1), (2, 1), (2, 0), (3, 0), (3, 1), (4, 1), (4, 0)]
    assert interleaved(2, 2, repeat=1) == [(1, 1), (1, 0), (2, 0), (2, 1)]
    assert interleaved(3, 2)[:6] == [(1, 0), (1, 1), (1, 2), (2, 2), (2, 1), (2, 0)]
    assert sequential(2, 2) == [(1, 0), (2, 0), (1, 1), (2, 1)]


def test_ratio_is_time_of_first_over_second_and_verdict_names_the_faster():
    groups = [stats.log_ratios([2.0, 2.02, 1.98], [1.0, 1.01, 0.99])] * 3
    interval = stats.ratio_interval(groups)
    assert interval.ratio == pytest.approx(2.0, rel=1e-3)
    verdict = stats.judge("tf", "pt", interval)
    assert verdict.significant and verdict.text.startswith("pt 2.00× faster than tf (95 % CI")
    flipped = stats.judge("pt", "tf", stats.ratio_interval([-g for g in groups]))
    assert flipped.text.startswith("pt 2.00× faster than tf")
    doc = verdict.to_dict()
    assert doc["frameworks"] == ["tf", "pt"] and doc["ratio"] == pytest.approx(2.0, rel=1e-3)
    assert doc["ci95"][0] <= doc["ratio"] <= doc["ci95"][1] and doc["significant"] is True


def test_verdict_rule_has_three_outcomes():
    contains_one = stats.Interval(1.01, 0.98, 1.04, 3, "repeats")
    within_noise = stats.Interval(1.02, 1.01, 1.025, 3, "repeats")
    beyond = stats.Interval(1.05, 1.01, 1.09, 3, "repeats")
    assert "no significant difference" in stats.judge("a", "b", contains_one).text
    v = stats.judge("a", "b", within_noise)
    assert not v.significant and "difference within noise" in v.text
    assert stats.judge("a", "b", within_noise, noise_threshold=0.01).significant  # threshold is honoured
    v = stats.judge("a", "b", beyond)
    assert v.significant and v.text == "b 1.05× faster than a (95 % CI 1.01–1.09)"


def test_bootstrap_resamples_repeats_then_epochs():
    # Two repeats whose epochs agree within each repeat: the spread comes from the repeat level.
    boot = stats.bootstrap_means([[0.0, 0.0], [1.0, 1.0]], samples=4000, seed=0)
    assert set(np.round(np.unique(boot), 6)) == {0.0, 0.5, 1.0}
    assert np.mean(boot == 0.5) == pytest.approx(0.5, abs=0.03)
    # One repeat: epochs are resampled; groups of unequal length draw only their own values.
    boot = stats.bootstrap_means([[0.0, 2.0], [5.0]], samples=4000, seed=0)
    assert boot.min() >= 0 and boot.max() <= 5 and np.isclose(boot, 5.0).any()


def test_interval_units_and_width():
    one = stats.ratio_interval([[0.01, -0.01, 0.02, 0.0]])
    assert (one.units, one.unit) == (4, "epochs")
    three = stats.ratio_interval([[0.01, 0.0], [0.02, 0.01], [-0.01, 0.0]])
    assert (three.units, three.unit) == (3, "repeats")
    assert three.low < three.ratio < three.high
    # one value per repeat: the bootstrap SE times sqrt(n/(n-1)) is the sample SE; Student's t with 2 df
    values = np.array([0.01, 0.03, 0.05])
    exact = stats.ratio_interval([[v] for v in values], samples=100_000)
    half = 4.302653 * values.std(ddof=1) / math.sqrt(3)
    assert math.log(exact.high) - 0.03 == pytest.approx(half, rel=0.02)
    assert math.log(exact.low) == pytest.approx(0.03 - half, rel=0.05)
    lone = stats.ratio_interval([[0.2]])
    assert (lone.low, lone.high) == (0.0, math.inf)
    verdict = stats.judge("a", "b", lone)
    assert not verdict.significant and "cannot be judged" in verdict.text and verdict.to_dict()["ci95"][1] is None
    assert stats.repeats_for(lone, 1) == 3
    wide = stats.Interval(1.0, 0.9, 1.1, 2, "repeats")
    assert wide.half_width == pytest.approx(0.1)
    assert stats.repeats_for(wide, 2) == math.ceil(2 * (0.1 / 0.03) ** 2)
    assert stats.repeats_for(stats.Interval(1.0, 0.99, 1.01, 2, "repeats"), 2) == 2


def test_bad_times_are_refused():
    with pytest.raises(ValueError, match="unpaired"):
        stats.log_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        stats.log_ratios([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="no paired epochs"):
        stats.ratio_interval([[]])


def test_noise_flags_name_each_reason_with_its_numbers():
    quiet = stats.noise_flags({"a": [10.0, 10.1, 9.9]}, 300, 305,
                              {"cpu_jiffies": 0, "steal_jiffies": 0, "loadavg_1min": 2.5, "busy_share": 0.1},
                              {"cpu_jiffies": 1000, "steal_jiffies": 5})
    assert quiet == []
    flags = stats.noise_flags({"a": [10.0, 10.0, 10.0, 16.0], "b": [10.0, 13.0, 8.0]}, 300, 250,
                              {"cpu_jiffies": 0, "steal_jiffies": 0, "loadavg_1min": 1.5, "busy_share": 0.6},
                              {"cpu_jiffies": 1000, "steal_jiffies": 50})
    text = "\n".join(flags)
    assert "a: epoch 4 took 16.00 s against a mean of 11.50 s" not in text  # 39 % away: not an outlier
    assert "b: epoch times vary by 24%" in text
    assert "a: epoch times vary by 26%" in text
    assert "matmul rate moved -17%" in text
    assert "5.0% of the CPU time" in text
    assert "other work used 60% of the CPU just before training (load average 1.50)" in text
    outlier = stats.noise_flags({"c": [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 20.0]})
    assert any("c: epoch 8 took 20.00 s" in f for f in outlier)
    assert stats.steal_share({}, {}) is None
