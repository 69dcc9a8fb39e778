"""The Keras twins on JAX and on PyTorch: each runs in a process of its own where Keras already runs on another
backend here, and answers through the same functions; a `.keras` file moves between backends; `summary`, `check
--twin` and `compare` take them. Their numbers against the reference are test_layers', test_transfer's and
test_training_equivalence's, as every twin's."""

import gc
import json

import numpy as np
import pytest

from tests.helpers import LOGIT_ATOL, assert_close, require, shell_environment
from tests.mnist_files import tiny_arrays, write_idx_dir
from twincnn import backends, reference
from twincnn.cli import main
from twincnn.spec import Spec, batchnorm, conv, dense, FLATTEN
from twincnn.weights import random_weights

KERAS_TWINS = [name for name, entry in backends.BACKENDS.items() if "keras" in entry.model_packages]
LAYERED = [name for name, entry in backends.BACKENDS.items() if entry.runs_on]
# 'same' padding on a stride (the odd row and column at the bottom and right) and BatchNorm with its statistics
SAME_AND_BATCHNORM = Spec((28, 28, 1), (conv(8, 3, 2, "same", "relu"), batchnorm(0.9, 1e-3), FLATTEN, dense(10)))


@pytest.mark.parametrize("saved_on", KERAS_TWINS)
@pytest.mark.parametrize("loaded_on", KERAS_TWINS)
def test_a_keras_file_saved_on_one_backend_loads_on_another_with_its_weights(saved_on, loaded_on, tmp_path):
    saver, loader = require(saved_on), require(loaded_on)
    weights = random_weights(SAME_AND_BATCHNORM, 3)
    model = saver.build(SAME_AND_BATCHNORM, seed=0)
    saver.set_weights(model, SAME_AND_BATCHNORM, weights)
    path = tmp_path / "model.keras"
    saver.save_file(model, SAME_AND_BATCHNORM, path)
    loaded, spec = loader.load_file(path, None)
    back = loader.get_weights(loaded, spec)
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in weights.items()}
    assert all(np.array_equal(back[k], weights[k]) for k in weights), f"{saved_on} -> {loaded_on}: weights moved"
    x = np.random.default_rng(0).random((16, 28, 28, 1), np.float32)
    assert_close(loader.predict(loaded, x), reference.forward(SAME_AND_BATCHNORM, weights, x), LOGIT_ATOL,
                 f"{saved_on} -> {loaded_on}: logits")


@pytest.mark.parametrize("name", LAYERED[:1])  # the machinery is one for all
def test_a_twin_in_its_own_process_ends_with_this_one(name):
    """Where Keras runs on another backend here, the twin answers from a child process, which exits when its
    stdin closes (at this process's exit, or close())."""
    from twincnn.backends.isolated import TwinProcess

    require("tensorflow")  # Keras runs on TensorFlow in this process, so the other Keras twins cannot
    twin = require(name)
    assert isinstance(twin, TwinProcess) and twin.NAME == name
    child = twin._child
    twin.close()
    assert child.poll() is not None
    assert require(name).NAME == name  # started again when asked for again


def test_a_twin_process_lets_go_of_what_no_remote_holds_here():
    """A long session (a test run, a notebook) holds in the twin's process only the objects it still refers to;
    a method taken from a held object keeps the object."""
    require("tensorflow")
    twin = require(LAYERED[0])
    gc.collect()
    before = twin.held()  # after what earlier tests left behind is let go
    models = [twin.build(SAME_AND_BATCHNORM, seed=seed) for seed in range(3)]
    assert twin.held() == before + 3
    count_params = models[0].count_params
    del models
    gc.collect()
    assert twin.held() == before + 1, "models no Remote refers to are still held, or a method's model was let go"
    assert count_params() > 0
    del count_params
    gc.collect()
    assert twin.held() == before


def test_a_twin_process_reports_bad_input_as_such_and_a_bug_with_its_traceback():
    from twincnn.backends.isolated import IsolatedFailure

    require("tensorflow")
    twin = require(LAYERED[0])
    with pytest.raises(ValueError, match="^unknown variant 'fast'"):
        twin.make_predictor(None, "fast")
    with pytest.raises(IsolatedFailure, match="(?s)Traceback.*AttributeError"):
        twin.get_weights(None, SAME_AND_BATCHNORM)


def test_summary_shows_the_keras_twins_on_jax_and_pytorch(capsys):
    for name in LAYERED:
        require(name)
    assert main(["summary", "--frameworks", ",".join(LAYERED)]) == 0
    out = capsys.readouterr().out
    assert out.count("90,978") == 1 + len(LAYERED), out  # the spec's total, then each twin's
    assert "agree: every framework matches" in out


@pytest.mark.parametrize("name", LAYERED)
def test_check_calls_a_keras_file_saved_on_tensorflow_the_same_as_its_twin_on_another_backend(name, tmp_path,
                                                                                              capsys):
    tf = require("tensorflow")
    require(name)
    model = tf.build(SAME_AND_BATCHNORM, seed=0)
    tf.set_weights(model, SAME_AND_BATCHNORM, random_weights(SAME_AND_BATCHNORM, 5))
    path = tmp_path / "mine.keras"
    tf.save_file(model, SAME_AND_BATCHNORM, path)
    assert main(["check", str(path), "--twin", name, "--samples", "64"]) == 0
    out = capsys.readouterr().out
    assert "moving statistics" in out and "verdict: the same function" in out, out


def test_a_twin_that_runs_on_another_named_is_judged_against_it():
    from twincnn.compare.command import first_and_layered_pairs

    names = ["keras-jax", "keras-torch", "torch", "jax"]
    assert first_and_layered_pairs(names, names) == [("keras-jax", "keras-torch"), ("keras-jax", "torch"),
                                                     ("keras-jax", "jax"), ("torch", "keras-torch")]
    assert first_and_layered_pairs(["torch", "jax"], ["torch", "jax"]) is None  # each against the first
    assert first_and_layered_pairs(["jax", "keras-jax", "keras-jax"], ["jax", "keras-jax", "keras-jax#2"]) is None


@pytest.mark.slow
def test_compare_pairs_each_keras_twin_with_the_framework_it_runs_on(tmp_path):
    """Four workers on tiny data that a CNN learns in a few steps, blocks of 5 steps: both layered pairs in one Holm
    family, Keras's version and backend recorded for each Keras twin, and fair twins that end within 1.5 pp (three
    of 200 test images). That they learn alike on real digits is the agreement gate's (test_accuracy_gates.py), for
    each twin against the reference twin."""
    for name in ("keras-jax", "keras-torch", "torch", "jax"):
        require(name)
    data = write_idx_dir(tmp_path / "idx", tiny_arrays(640, 200, seed=6), gz=True)
    out = tmp_path / "out"
    assert main(["compare", "--no-progress", "--no-floor", "--out", str(out), "--frameworks",
                 "keras-jax,keras-torch,torch,jax", "--data", str(data), "--epochs", "2", "--repeats", "2",
                 "--block-steps", "5"]) == 0
    doc = json.loads((out / "results.json").read_text())
    pairs = [set(v["frameworks"]) for v in doc["verdicts"]]
    assert {"keras-jax", "jax"} in pairs and {"keras-torch", "torch"} in pairs, pairs
    assert all("Holm" in v["family"] for v in doc["verdicts"]) and doc["scaling"] == []
    accuracies = [doc["frameworks"][name]["test_accuracy"] for name in ("keras-jax", "keras-torch", "torch", "jax")]
    assert max(accuracies) - min(accuracies) <= 0.015, accuracies
    for name, backend in (("keras-jax", "jax"), ("keras-torch", "torch")):
        environment = doc["environment"]["frameworks"][name]
        assert environment["keras_backend"] == backend and environment["keras"], environment
        assert backend in environment["version"], environment  # the backend's version beside Keras's


def test_where_keras_runs_on_jax_a_keras_file_is_read_by_keras_on_jax(tmp_path):
    """A process started with KERAS_BACKEND=jax (a user's, with the pytest plugin) reads a .keras file with the Keras
    twin on JAX, and a model made there is that twin's."""
    import subprocess
    import sys

    tf = require("tensorflow")
    require("keras-jax")
    tf.save_file(tf.build(SAME_AND_BATCHNORM, seed=0), SAME_AND_BATCHNORM, tmp_path / "m.keras")
    code = ("from twincnn import backends; from twincnn.sources import load_source; "
            f"print(backends.framework_of(load_source({str(tmp_path / 'm.keras')!r})))")
    env = {**shell_environment(), "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["keras-jax"]
