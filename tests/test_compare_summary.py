"""compare/summary.py on made-up worker messages: runs, medians over repeats, and verdicts. No framework."""

import math

import numpy as np
import pytest

from twincnn import stats
from twincnn.compare.summary import aggregate, build_run, steady_epochs, verdicts

Y_TEST = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 2)


def messages(seconds, losses=None, accuracy=0.9, predictions=None, steps=10, median_step=0.01, pid=100):
    losses = losses or [1.0 / (i + 1) for i in range(len(seconds))]
    epochs = [{"epoch": i + 1, "seconds": s, "start": 1000.0 + 100 * i, "end": 1000.0 + 100 * i + s,
               "position": 2 * i, "steps": steps, "median_step_seconds": median_step, "train_loss": loss,
               "test_loss": loss / 2, "test_accuracy": accuracy} for i, (s, loss) in enumerate(zip(seconds, losses))]
    return {"ready": {"threads": {"intra_op_threads": 2}, "pid": pid}, "epochs": epochs,
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
    assert run["schedule"][1] == {"epoch": 2, "position": 2, "start": 1100.0, "end": 1103.0}
    one = build_run(job(), messages([5.0], median_step=0.02), images=600)
    assert one["later_epoch_seconds"] is None and one["median_step_ms"] == pytest.approx(20.0)


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


def test_steady_epochs_skip_the_first_unless_it_is_all():
    assert steady_epochs([9.0, 1.0, 2.0]) == [1.0, 2.0]
    assert steady_epochs([9.0]) == [9.0]


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
    assert first["first_epoch_ratio"] == pytest.approx(9.0 / 4.0)
    assert first["total_ratio"] == pytest.approx(13.0 / 6.01)
    assert first["accuracy_gap"] == pytest.approx(0.1)
    assert first["prediction_agreement"] == pytest.approx(0.75)
    assert not second["significant"] and "no significant difference" in second["text"]
    assert second["noise_threshold"] == stats.NOISE_THRESHOLD
    assert verdicts(runs, noise_threshold=0.9)[0]["text"].startswith("b 1.9")  # far outside any threshold
