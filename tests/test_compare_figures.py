"""compare/figures.py on made-up worker messages: runs, medians over repeats, and verdicts. No framework."""

import math
import warnings

import numpy as np
import pytest

from twincnn import stats
from twincnn.compare.figures import aggregate, build_run, epoch_name, steady_blocks, verdicts

Y_TEST = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 2)


def messages(seconds, losses=None, accuracy=0.9, predictions=None, steps=10, median_step=0.01, pid=100, blocks=1):
    """A worker's messages for epochs of ``seconds``, each cut into ``blocks`` equal blocks."""
    losses = losses or [1.0 / (i + 1) for i in range(len(seconds))]
    epochs = [{"epoch": i + 1, "seconds": s, "steps": steps, "median_step_seconds": median_step, "train_loss": loss,
               "test_loss": loss / 2, "test_accuracy": accuracy,
               "slowest_step": median_step and [i + 2, 3 * median_step, 2 * median_step], "outside_steps_seconds": median_step and s / 10,
               "major_page_faults": 7 * i}
              for i, (s, loss) in enumerate(zip(seconds, losses))]
    timed = [{"epoch": i + 1, "block": k + 1, "seconds": s / blocks, "start": 1000.0 + 100 * i + k * s / blocks,
              "end": 1000.0 + 100 * i + (k + 1) * s / blocks, "position": 2 * (i * blocks + k), "steps": steps // blocks,
              "cpu_seconds": 2 * s / blocks, "waiting_cpu_seconds": 0.001 * i, "other_cpu_share": 0.01,
              "major_page_faults": 7 * i // blocks}
             for i, s in enumerate(seconds) for k in range(blocks)]
    return {"ready": {"threads": {"intra_op_threads": 2}, "pid": pid, "timing_includes": "",
                      "start_weights_sha256": f"sha-{pid}"},
            "epochs": epochs, "blocks": timed,
            "done": {"predictions": list(Y_TEST if predictions is None else predictions)}}


def job(framework="a", label=None, seed=42):
    return {"framework": framework, "label": label or framework, "seed": seed, "variant": "tuned"}


def test_build_run_adds_up_epochs_and_keeps_the_schedule():
    run = build_run(job(), messages([5.0, 3.0, 4.0], median_step=None), images=600)
    assert run["train_seconds"] == 12.0 and run["first_epoch_seconds"] == 5.0
    assert run["later_epoch_seconds"] == 3.5 and run["median_step_ms"] is None
    assert run["images_per_second"] == pytest.approx(600 * 3 / 12.0)
    assert run["steps"] == 30 and run["pid"] == 100 and run["test_loss"] == pytest.approx(1 / 6)
    assert run["history"]["epoch_seconds"] == [5.0, 3.0, 4.0]
    assert [e["position"] for e in run["schedule"]] == [0, 2, 4]
    assert run["schedule"][1] == {"epoch": 2, "block": 1, "position": 2, "start": 1100.0, "end": 1103.0,
                                  "seconds": 3.0, "steps": 10, "cpu_seconds": 6.0, "waiting_cpu_seconds": 0.001,
                                  "other_cpu_share": 0.01, "major_page_faults": 7}
    assert run["waiting_cpu_seconds"] == pytest.approx(0.003)
    assert run["history"]["block_seconds"] == [[5.0], [3.0], [4.0]]
    halves = build_run(job(), messages([5.0, 3.0], blocks=2), images=600)
    assert halves["history"]["block_seconds"] == [[2.5, 2.5], [1.5, 1.5]]
    assert [(b["epoch"], b["block"]) for b in halves["schedule"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert halves["waiting_cpu_seconds"] == pytest.approx(0.002)
    one = build_run(job(), messages([5.0], median_step=0.02), images=600)
    assert one["later_epoch_seconds"] is None and one["median_step_ms"] == pytest.approx(20.0)
    assert one["epoch_breakdown"] == {"slowest_step": [[2, 0.06, 0.04]], "outside_steps_seconds": [0.5],
                                      "major_page_faults": [0]}
    assert run["epoch_breakdown"] == {"slowest_step": [None] * 3, "outside_steps_seconds": [None] * 3,
                                      "major_page_faults": [0, 7, 14]}


def test_an_epoch_is_named_with_where_its_time_went():
    breakdown = build_run(job(), messages([5.0, 30.0], median_step=0.02), images=600)["epoch_breakdown"]
    assert epoch_name(breakdown, 3, 2) == ("repeat 3 epoch 2; 7 major page faults (memory read back from disk); "
                                           "slowest step 0.06 s (step 3, 0.04 s of CPU), 3.00 s outside its steps")
    assert epoch_name(breakdown, 3, 1) == ("repeat 3 epoch 1; slowest step 0.06 s (step 2, 0.04 s of CPU), 0.50 s "
                                           "outside its steps")
    unknown = build_run(job(), messages([5.0, 30.0], median_step=None), images=600)["epoch_breakdown"]
    assert epoch_name(unknown, 3, 1) == "repeat 3 epoch 1"  # step times not measured on an asynchronous device
    assert epoch_name(unknown, 3, 2) == "repeat 3 epoch 2; 7 major page faults (memory read back from disk)"


def test_aggregate_takes_medians_and_spreads_over_repeats():
    runs = [build_run(job(seed=s), messages(t, accuracy=acc), 600)
            for s, t, acc in ((42, [5.0, 3.0], 0.9), (43, [7.0, 4.0], 0.8), (44, [6.0, 9.0], 0.95))]
    out = aggregate(runs, Y_TEST, floor_seconds=2.0)
    assert out["train_seconds"] == 11.0 and out["spread"]["train_seconds"] == [8.0, 15.0]
    assert out["test_accuracy"] == 0.9 and out["spread"]["test_accuracy"] == [0.8, 0.95]
    assert out["history"]["epoch_seconds"] == [6.0, 4.0]
    assert out["floor_multiple"] == 5.5 and out["steps"] == 20 and out["framework"] == "a"
    assert np.trace(out["confusion_matrix"]) == 20 and len(out["runs"]) == 3
    assert "predictions" not in out["runs"][0]
    assert aggregate(runs, Y_TEST, None)["floor_multiple"] is None


def test_steady_blocks_leave_out_the_warm_up_block_and_the_first_epochs_last():
    def blocks(*epochs):
        return steady_blocks({"history": {"block_seconds": [list(e) for e in epochs]}})

    assert blocks([9, 1, 2, 3, 8]) == [1, 2, 3]
    assert blocks([9, 1, 2, 8], [4, 5, 6, 7]) == [1, 2, 4, 5, 6, 7]
    assert blocks([9], [1], [2]) == [1, 2]  # whole epochs: epochs 2..E
    assert blocks([9, 8], [1, 2]) == [1, 2]
    assert blocks([9]) == [9] and blocks([9, 8]) == [9, 8]  # nothing else to judge: every block


def test_verdicts_judge_each_framework_against_the_first():
    wrong = Y_TEST.copy()
    wrong[:5] = (wrong[:5] + 1) % 10
    runs = {
        "a": [build_run(job("a", seed=s), messages([9.0, 2.0, 2.0], accuracy=0.9), 600) for s in (42, 43, 44)],
        "b": [build_run(job("b", seed=s), messages([4.0, 1.0, 1.0 + 0.01 * i], accuracy=0.8, predictions=wrong),
                        600) for i, s in enumerate((42, 43, 44))],
        "c": [build_run(job("c", seed=s), messages([9.0, 2.0 + 0.01 * i, 2.0 - 0.01 * i]), 600)
              for i, s in enumerate((42, 43, 44))],
    }
    first, second = verdicts(runs)
    assert first["frameworks"] == ["a", "b"] and second["frameworks"] == ["a", "c"]
    assert first["significant"] and first["text"].startswith("b 1.9")
    assert first["ratio"] == pytest.approx(math.exp(np.mean([np.mean(np.log([2.0, 2.0]) - np.log([1.0, 1.0 + 0.01 * i]))
                                                             for i in range(3)])))
    assert first["epochs"] == "2..3" and first["units"] == 3 and first["unit"] == "repeats"
    # two comparisons: Holm; b's clear difference is tested first, at 97.5 %, c's then at 95 %
    assert first["family"] == second["family"] == "Holm over 2 comparisons"
    assert (first["confidence"], second["confidence"]) == (pytest.approx(0.975), pytest.approx(0.95))
    assert "(97.5 % CI " in first["text"]
    assert first["first_epoch_ratio"] == pytest.approx(9.0 / 4.0)
    assert first["total_ratio"] == pytest.approx(13.0 / 6.01)
    assert first["accuracy_gap"] == pytest.approx(0.1)
    assert first["prediction_agreement"] == pytest.approx(0.75)
    assert not second["significant"] and "no significant difference" in second["text"]
    assert second["noise_threshold"] == stats.NOISE_THRESHOLD
    assert verdicts(runs, noise_threshold=0.9)[0]["text"].startswith("b 1.9")  # far outside any threshold


def test_verdicts_of_a_lengthened_run_take_their_spread_and_holm_order_from_the_planned_repeats():
    """spread_from (a --precision run): each interval and each Holm p-value on the first repeats' spread. Here
    a/b's planned repeats agree exactly and its later ones scatter, so on the planned spread a/b is tested first
    (97.5 %), on every repeat's a/c is."""
    seeds = range(42, 47)
    b_logs, c_logs = [0.1, 0.1, 0.1, 0.5, -0.3], [0.1, 0.2, 0.3, 0.2, 0.2]
    runs = {"a": [build_run(job("a", seed=s), messages([9.0, 2.0, 2.0]), 600) for s in seeds],
            "b": [build_run(job("b", seed=s), messages([4.0] + [2.0 / math.exp(d)] * 2), 600) for s, d in zip(seeds, b_logs)],
            "c": [build_run(job("c", seed=s), messages([4.0] + [2.0 / math.exp(d)] * 2), 600) for s, d in zip(seeds, c_logs)]}
    groups = [[[d, d] for d in logs] for logs in (b_logs, c_logs)]
    for spread_from, levels in ((3, (0.975, 0.95)), (None, (0.95, 0.975))):
        judged = verdicts(runs, spread_from=spread_from)
        assert tuple(v["confidence"] for v in judged) == pytest.approx(levels)
        for v, g in zip(judged, groups):
            expected = stats.ratio_interval(g, confidence=v["confidence"], spread_from=spread_from)
            assert v["ci"] == pytest.approx([expected.low, expected.high]) and v["ratio"] == pytest.approx(expected.ratio)


def test_a_one_repeat_verdict_pairs_its_blocks_and_says_what_each_twin_s_timing_includes():
    def run(label, seconds, blocks=1, includes=""):
        worker = messages(seconds, blocks=blocks)
        worker["ready"]["timing_includes"] = includes
        return [build_run(job(label), worker, 600)]

    a, b = [9.0, 2.0, 2.1, 2.0], [4.0, 1.0, 1.1, 1.05]
    (epochs,) = verdicts({"a": run("a", a, includes="a validation pass"), "b": run("b", b)})
    assert (epochs["units"], epochs["unit"], epochs["family"]) == (3, "epochs", None)  # one comparison: no family
    assert epochs["timing_note"] == "a's time includes a validation pass"
    (blocks,) = verdicts({"a": run("a", a, 2, "its validation"), "b": run("b", b, 2, "a pause")})
    assert (blocks["units"], blocks["unit"]) == (6, "blocks")
    assert blocks["timing_note"] == "a's time includes its validation; b's time includes a pause"
    (plain,) = verdicts({"a": run("a", a), "b": run("b", b)})
    assert plain["timing_note"] is None


def test_build_run_keeps_the_job_and_each_epoch_s_curves():
    run = build_run(job("b", label="b-tuned", seed=43), messages([5.0, 3.0], losses=[0.8, 0.4], accuracy=0.7), 100)
    assert (run["framework"], run["label"], run["seed"], run["variant"]) == ("b", "b-tuned", 43, "tuned")
    assert run["threads"] == {"intra_op_threads": 2} and run["later_epoch_seconds"] == 3.0
    assert run["start_weights_sha256"] == "sha-100"
    assert run["history"] == {"epoch_seconds": [5.0, 3.0], "block_seconds": [[5.0], [3.0]],
                              "train_loss": [0.8, 0.4], "test_loss": [0.4, 0.2], "test_accuracy": [0.7, 0.7]}


def test_aggregate_of_one_repeat_and_of_missing_figures():
    run = build_run(job(), messages([5.0, 3.0], median_step=None), 600)
    out = aggregate([run], Y_TEST, floor_seconds=None)
    assert out["median_step_ms"] is None and "median_step_ms" not in out["spread"]
    assert out["train_seconds"] == 8.0 and out["spread"]["train_seconds"] == [8.0, 8.0]
    assert (out["framework"], out["steps"], out["variant"]) == ("a", 20, "tuned")
    assert out["threads"] == {"intra_op_threads": 2}
    assert out["history"]["epoch_seconds"] == [5.0, 3.0] and out["history"]["train_loss"] == [1.0, 0.5]


def test_aggregate_reports_every_class_of_the_data_of_the_first_repeat_s_model():
    y_test = np.array([0, 1, 2, 3, 4] * 4)  # classes 5..9 never occur
    first = y_test.copy()
    first[0] = 5  # one 0 taken for a 5
    runs = [build_run(job(seed=42), messages([5.0], predictions=first), 600),
            build_run(job(seed=43), messages([5.0], predictions=y_test), 600)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # classes never predicted count as 0, without a warning
        out = aggregate(runs, y_test, None, class_names=[str(c) for c in range(10)])
    matrix = np.array(out["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix[0, 5] == 1 and np.trace(matrix) == 19
    report = out["classification_report"]
    assert {k for k in report if k.isdigit()} == {str(c) for c in range(10)}
    assert report["0"]["recall"] == 0.75 and report["5"]["precision"] == 0.0
    assert report["9"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    rows = {line.split()[0]: line.split()[1:] for line in out["classification_report_text"].splitlines()
            if line.strip() and line.split()[0].isdigit()}
    assert list(rows) == [str(c) for c in range(10)]
    assert rows["0"] == ["1.0000", "0.7500", "0.8571", "4"] and rows["9"] == ["0.0000", "0.0000", "0.0000", "0"]


def test_verdicts_pass_the_threshold_on_and_name_the_epochs_judged():
    def pair(seconds_a, seconds_b):
        return {"a": [build_run(job("a", seed=s), messages(seconds_a(i)), 600) for i, s in enumerate((42, 43, 44))],
                "b": [build_run(job("b", seed=s), messages(seconds_b(i)), 600) for i, s in enumerate((42, 43, 44))]}

    runs = pair(lambda i: [9.0, 2.1 + 0.001 * i], lambda i: [4.0, 2.0])  # a is 5 % slower, tightly
    strict, = verdicts(runs)
    loose, = verdicts(runs, noise_threshold=0.1)
    assert strict["significant"] and strict["text"].startswith("b 1.05× faster than a")
    assert not loose["significant"] and "difference within noise" in loose["text"]
    assert loose["noise_threshold"] == 0.1 and strict["epochs"] == "2"
    one, = verdicts(pair(lambda i: [2.0 + 0.01 * i], lambda i: [1.0]))
    assert one["epochs"] == "1 (warm-up incl.)" and one["unit"] == "repeats"


def test_verdicts_pair_steady_blocks_one_by_one():
    """The unit paired is the block: each repeat's estimate is the mean of its steady blocks' log ratios,
    not the log ratio of epoch sums (which a verdict on epochs would give: log(4 / 2))."""
    def run(label, seed, block_seconds):
        r = build_run(job(label, seed=seed), messages([2.0, sum(block_seconds)], blocks=2), 600)
        r["history"]["block_seconds"][1] = block_seconds
        return r

    runs = {"a": [run("a", s, [1.0, 3.0]) for s in (42, 43, 44)],
            "b": [run("b", s, [1.0, 1.0 + 0.01 * i]) for i, s in enumerate((42, 43, 44))]}
    (verdict,) = verdicts(runs)
    expected = np.mean([np.mean(np.log([1.0, 3.0]) - np.log([1.0, 1.0 + 0.01 * i])) for i in range(3)])
    assert verdict["ratio"] == pytest.approx(math.exp(expected)) and verdict["units"] == 3
    assert verdict["ratio"] < 1.9  # log(4/2) would give 2


def test_class_names_label_the_reports_and_without_them_every_class_seen_is_numbered():
    y_test = np.array([0, 1, 2, 0, 1, 2])
    predictions = np.array([0, 1, 1, 0, 3, 2])  # a class the test set lacks is still a row and a column
    run = build_run(job(), messages([5.0], predictions=predictions), 600)
    named = aggregate([run], y_test, None, class_names=["cat", "dog", "fox", "owl"])
    assert named["class_names"] == ["cat", "dog", "fox", "owl"]
    assert named["classification_report"]["fox"]["recall"] == 0.5 and "2" not in named["classification_report"]
    assert named["classification_report_text"].split()[:1] == ["precision"]
    assert [line.split()[0] for line in named["classification_report_text"].splitlines()[2:6]] == \
        ["cat", "dog", "fox", "owl"]
    numbered = aggregate([run], y_test, None)
    assert numbered["class_names"] == ["0", "1", "2", "3"] and np.array(numbered["confusion_matrix"]).shape == (4, 4)
    assert numbered["confusion_matrix"][1] == [0, 1, 0, 1]


def test_the_confusion_matrix_text_heads_rows_and_columns_with_class_names():
    from twincnn.compare.output import confusion_lines

    lines = confusion_lines([[5, 0], [12345, 7]], ["cat", "hedgehog"])
    assert lines == ["              cat hedgehog",
                     "     cat        5        0",
                     "hedgehog    12345        7"]
    assert confusion_lines([[1]], None) == ["      0", "0     1"]
    assert confusion_lines([[1]], ["aquarium_fish_"]) == ["           aquarium_f", "aquarium_f          1"]
