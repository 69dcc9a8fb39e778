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
    assert "a: epoch time 4 of 4 was 16.00 s against a mean of 11.50 s" not in text  # 39 % away: not an outlier
    assert "b: epoch times vary by 24%" in text
    assert "a: epoch times vary by 26%" in text
    assert "matmul rate moved -17%" in text
    assert "5.0% of the CPU time" in text
    assert "other work used 60% of the CPU just before training (load average 1.50)" in text
    outlier = stats.noise_flags({"c": [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 20.0]})
    assert any("c: epoch time 8 of 8 was 20.00 s" in f for f in outlier)
    assert stats.steal_share({}, {}) is None


def test_zero_or_negative_times_on_either_side_are_refused_with_the_reason():
    for a, b in (([1.0], [0.0]), ([1.0], [-1.0]), ([0.0], [1.0])):
        with pytest.raises(ValueError, match="^epoch times must be positive$"):
            stats.log_ratios(a, b)
    with pytest.raises(ValueError, match="^no values to resample$"):
        stats.bootstrap_means([[], []])
    with pytest.raises(ValueError, match="^no paired epochs to judge$"):
        stats.ratio_interval([])


def test_bootstrap_and_interval_are_reproducible_and_the_seed_is_honoured():
    groups = [[0.01, 0.03, -0.02], [0.02, 0.0, 0.05], [0.04, -0.01, 0.01]]
    boot = stats.bootstrap_means(groups, samples=500, seed=5)
    assert np.array_equal(boot, stats.bootstrap_means(groups, samples=500, seed=5))
    assert not np.array_equal(boot, stats.bootstrap_means(groups, samples=500, seed=6))
    # the default seed is 0: a recorded verdict reproduces with seed=0
    assert np.array_equal(stats.bootstrap_means(groups, samples=500), stats.bootstrap_means(groups, 500, seed=0))
    interval = stats.ratio_interval(groups, samples=500, seed=5)
    assert interval == stats.ratio_interval(groups, samples=500, seed=5)
    assert interval != stats.ratio_interval(groups, samples=500, seed=6)
    assert stats.ratio_interval(groups, samples=500) == stats.ratio_interval(groups, samples=500, seed=0)


def test_a_shorter_repeat_averages_exactly_its_own_number_of_draws():
    # repeat means: the short repeat's resample mean is 0, 1 or 2 (two draws of 0 or 2); the long one's is 10
    boot = stats.bootstrap_means([[0.0, 2.0], [10.0, 10.0, 10.0]], samples=2000, seed=0)
    possible = {(x + y) / 2 for x in (0.0, 1.0, 2.0, 10.0) for y in (0.0, 1.0, 2.0, 10.0)}
    assert set(np.unique(boot)) <= possible and {0.5, 5.5} <= set(np.unique(boot))


def test_two_repeats_are_two_units_and_give_a_finite_interval():
    two = stats.ratio_interval([[0.01, 0.0, 0.02], [0.02, 0.01, 0.03]], samples=1000)
    assert (two.units, two.unit) == (2, "repeats")
    assert 0 < two.low < two.ratio < two.high < math.inf
    two_epochs = stats.ratio_interval([[0.01, 0.03]], samples=1000)
    assert (two_epochs.units, two_epochs.unit) == (2, "epochs") and two_epochs.high < math.inf
    lone = stats.ratio_interval([[0.2]])
    assert lone == stats.Interval(math.exp(0.2), 0.0, math.inf, 1, "epochs")


def test_each_verdict_records_the_pair_interval_and_threshold():
    cases = {
        "unjudgeable": (stats.Interval(1.2, 0.0, math.inf, 1, "epochs"), False,
                        "a vs b: one timed epoch cannot be judged (time ratio 1.200); use --repeats 3 or more"),
        "contains one": (stats.Interval(1.01, 0.98, 1.04, 3, "repeats"), False,
                         "a vs b: no significant difference (time ratio 1.010, 95 % CI 0.98–1.04)"),
        "within noise": (stats.Interval(0.98, 0.975, 0.985, 3, "repeats"), False,
                         "a vs b: difference within noise (time ratio 0.980, 95 % CI 0.97–0.98, inside ±3%)"),
        "a faster": (stats.Interval(0.5, 0.4, 0.625, 3, "repeats"), True,
                     "a 2.00× faster than b (95 % CI 1.60–2.50)"),
        "b faster": (stats.Interval(2.0, 1.6, 2.5, 3, "repeats"), True,
                     "b 2.00× faster than a (95 % CI 1.60–2.50)"),
    }
    for name, (interval, significant, text) in cases.items():
        verdict = stats.judge("a", "b", interval)
        assert verdict == stats.Verdict(("a", "b"), interval, stats.NOISE_THRESHOLD, significant, text), name
        assert verdict.to_dict()["noise_threshold"] == stats.NOISE_THRESHOLD
        assert verdict.to_dict()["significant"] is significant


def test_interval_bounds_on_the_rule_s_edges_count_as_inside():
    # a CI that touches 1 contains it; one that touches the noise threshold lies within noise
    assert "no significant difference" in stats.judge("a", "b", stats.Interval(1.02, 1.0, 1.04, 3, "repeats")).text
    assert "no significant difference" in stats.judge("a", "b", stats.Interval(0.98, 0.96, 1.0, 3, "repeats")).text
    for low, high in ((0.75, 0.9), (1.1, 1.25)):
        verdict = stats.judge("a", "b", stats.Interval(math.sqrt(low * high), low, high, 3, "repeats"), 0.25)
        assert not verdict.significant and "difference within noise" in verdict.text


def test_repeats_for_grows_with_the_interval_and_keeps_enough_repeats():
    lone = stats.Interval(1.0, 0.0, math.inf, 1, "epochs")
    assert stats.repeats_for(lone, 1) == 3 and stats.repeats_for(lone, 5) == 6
    on_target = stats.Interval(1.0, 0.75, 1.25, 3, "repeats")  # half-width exactly 25 %
    assert stats.repeats_for(on_target, 3, target=0.25) == 3 and stats.repeats_for(on_target, 1, target=0.25) == 1
    barely_wider = stats.Interval(1.0, 0.74, 1.26, 3, "repeats")
    assert stats.repeats_for(barely_wider, 3, target=0.25) == 4
    assert stats.repeats_for(barely_wider, 1, target=0.25) == 3  # from at least 2 repeats' worth


def test_noise_flags_on_their_thresholds_and_with_few_epochs():
    # cv exactly 10 %; an epoch exactly 50 % from the mean; steal exactly 2 %; busy exactly 25 %
    assert stats.noise_flags({"a": [9.0, 10.0, 11.0]}) == [
        "a: epoch times vary by 10% (coefficient of variation ≥ 10%)"]
    assert "b: epoch time 3 of 3 was 6.00 s against a mean of 4.00 s" in stats.noise_flags({"b": [3.0, 3.0, 6.0]})
    flags = stats.noise_flags({}, None, None, {"cpu_jiffies": 1000, "steal_jiffies": 10, "busy_share": 0.25},
                              {"cpu_jiffies": 2000, "steal_jiffies": 30})
    assert flags == ["the hypervisor took 2.0% of the CPU time (steal)",
                     "other work used 25% of the CPU just before training"]
    # two epochs are enough to judge a run; a one-epoch run does not stop the others being judged
    assert stats.noise_flags({"a": [10.0], "b": [10.0, 14.0]}) == [
        "b: epoch times vary by 24% (coefficient of variation ≥ 10%)"]
    # an epoch far below the mean is an outlier too
    low = stats.noise_flags({"c": [10.0] * 7 + [2.0]})
    assert any(f.startswith("c: epoch time 8 of 8 was 2.00 s against a mean of 9.00 s") for f in low)


def test_noise_flags_need_both_readings():
    assert stats.noise_flags({}, 300, None) == [] and stats.noise_flags({}, None, 200) == []
    busy = {"cpu_jiffies": 0, "steal_jiffies": 0, "busy_share": 0.9}
    assert stats.noise_flags({}, machine_before=busy) == []
    assert stats.noise_flags({}, machine_before=None, machine_after=busy) == []


def test_steal_share_is_the_stolen_part_of_the_elapsed_jiffies():
    assert stats.steal_share({"cpu_jiffies": 1000, "steal_jiffies": 10},
                             {"cpu_jiffies": 2000, "steal_jiffies": 30}) == pytest.approx(0.02)
    assert stats.steal_share({"cpu_jiffies": 5, "steal_jiffies": 0}, {"cpu_jiffies": 6, "steal_jiffies": 1}) == 1.0
    assert stats.steal_share({"cpu_jiffies": 5, "steal_jiffies": 0}, {"cpu_jiffies": 5, "steal_jiffies": 0}) is None
    assert stats.steal_share({"cpu_jiffies": 5}, {"cpu_jiffies": 6}) is None
