"""`twincnn compare` on small data: protocols, options, outputs, errors, and atomic results."""

import json

import numpy as np
import pytest

from tests.mnist_files import tiny_arrays, write_idx_dir
from twincnn.cli import main
from twincnn.compare.output import atomic_directory
from twincnn.compare.protocol import cross_entropy


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_idx_dir(tmp_path_factory.mktemp("tiny") / "idx", tiny_arrays(640, 200, seed=5), gz=True)


def compare(tmp_path, *args):
    out = tmp_path / "out"
    rc = main(["compare", "--no-progress", "--no-floor", "--out", str(out), *args])
    return rc, out


def one_framework():
    """Error-path tests need only one installed framework (tox -e tf / -e torch have one)."""
    from twincnn import backends

    names = backends.available()
    if not names:
        pytest.skip("no framework installed: pip install 'twincnn[tf]' or 'twincnn[torch]'")
    return ["--frameworks", names[0]]


def test_quick_on_another_dataset_reports_that_dataset(both, tmp_path, tiny_dir):
    rc, out = compare(tmp_path, "--quick", "--data", str(tiny_dir))
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["data"]["train_images"] == 640 and doc["data"]["test_images"] == 200
    assert str(tiny_dir) in doc["data"]["source"]
    for fig in doc["frameworks"].values():
        cm = np.array(fig["confusion_matrix"])
        assert cm.sum() == 200  # this dataset's test set, not MNIST's
        assert fig["test_accuracy"] == pytest.approx(np.trace(cm) / 200)
    assert "Quick demo" in (out / "report.md").read_text()


def test_notebook_protocol_and_repeats(both, tmp_path, tiny_dir):
    rc, out = compare(tmp_path, "--protocol", "notebook", "--data", str(tiny_dir), "--epochs", "2",
                      "--repeats", "2")
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["protocol"] == "notebook" and doc["config"]["seeds"] == [42, 43]
    for fig in doc["frameworks"].values():
        assert len(fig["runs"]) == 2 and len(fig["history"]["epoch_seconds"]) == 2
        lo, hi = fig["spread"]["train_seconds"]
        assert lo <= fig["train_seconds"] <= hi


@pytest.mark.parametrize("framework", ["tensorflow", "torch"])
def test_single_framework(framework, tmp_path, tiny_dir):
    from conftest import require

    require(framework)
    rc, out = compare(tmp_path, "--frameworks", framework, "--data", str(tiny_dir), "--epochs", "1",
                      "--variant", "idiomatic")
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert list(doc["frameworks"]) == [framework] and doc["difference"] is None


def test_fair_protocol_twins_agree_after_one_epoch(both, tmp_path, tiny_dir):
    """Same weights, batches and Adam: the two twins make (nearly) the same predictions."""
    rc, out = compare(tmp_path, "--data", str(tiny_dir), "--epochs", "1")
    doc = json.loads((out / "results.json").read_text())
    assert doc["difference"]["prediction_agreement"] >= 0.99


@pytest.mark.parametrize("args,message", [
    (["--frameworks", "jax"], "unknown framework 'jax'"),
    (["--data", "/nonexistent"], "no such file or directory"),
    (["--spec", "/nonexistent.json"], "no such spec file"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    rc, out = compare(tmp_path, *(args if "--frameworks" in args else one_framework() + args))
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_number_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        compare(tmp_path, "--epochs", "0")
    assert exc.value.code == 2 and "expected a positive integer" in capsys.readouterr().err


def test_out_dir_not_empty_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, _ = compare(tmp_path, "--quick", *one_framework())
    assert rc == 2 and "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_interrupted_run_leaves_nothing(tmp_path):
    final = tmp_path / "res"
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(final) as tmp:
            (tmp / "results.json").write_text("{}")
            raise KeyboardInterrupt
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_cross_entropy_matches_definition():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 2])
    p0 = np.exp(2) / (np.exp(2) + 1 + np.exp(-1))
    assert cross_entropy(logits, labels) == pytest.approx((-np.log(p0) - np.log(1 / 3)) / 2)
