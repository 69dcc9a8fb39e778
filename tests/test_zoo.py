"""The zoo from the command line: `--spec zoo:NAME` in summary and compare, and a one-line error for a wrong name.
(Each zoo spec's twins are proven equal in test_layers.py, with the other layer cases.)"""

import json

import pytest

from tests.mnist_files import tiny_arrays, write_idx_dir
from tests.helpers import frameworks
from twincnn import zoo
from twincnn.cli import main


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_idx_dir(tmp_path_factory.mktemp("tiny") / "idx", tiny_arrays(320, 100, seed=3))


@pytest.mark.slow  # a quarter of a minute per spec: CI runs them with the slow tests
@pytest.mark.parametrize("name", zoo.names())
def test_compare_runs_a_zoo_spec(tmp_path, tiny_dir, name):
    names = frameworks(2)
    out = tmp_path / "out"
    rc = main(["compare", "--no-progress", "--no-floor", "--out", str(out), "--spec", f"zoo:{name}", "--quick",
               "--repeats", "1", "--epochs", "1", "--frameworks", ",".join(names), "--data", str(tiny_dir)])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["spec"] == zoo.load(name).to_dict()


@pytest.mark.parametrize("name", zoo.names())
def test_summary_of_a_zoo_spec(framework, name, capsys):
    assert main(["summary", "--spec", f"zoo:{name}", "--frameworks", framework.NAME]) == 0
    assert "agree" in capsys.readouterr().out


def test_unknown_zoo_name_is_one_line(capsys):
    assert main(["summary", "--spec", "zoo:alexnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("twincnn summary: error: unknown zoo spec 'alexnet'; choose from gelu_layernorm, lenet5, "
                   "mobilenet_block, mobilenetv2_block, resnet8, vgg_block")
