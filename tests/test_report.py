"""`twincnn report`: results from two machines merged into one page and one figure."""

import json
import shutil

import pytest

from tests.mnist_files import tiny_arrays, write_idx_dir
from tests.helpers import frameworks
from twincnn.cli import main


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory):
    """A real compare run, and the same run as a second machine running an older twincnn (schema 2, whose
    verdicts hold "ci95") would have written it."""
    root = tmp_path_factory.mktemp("results")
    data = write_idx_dir(root / "idx", tiny_arrays(320, 100, seed=2))
    name = frameworks(1)[0]
    first = root / "machine-a" / "run1"
    assert main(["compare", "--no-progress", "--no-floor", "--frameworks", f"{name},{name}", "--data", str(data),
                 "--epochs", "2", "--repeats", "1", "--out", str(first)]) == 0
    second = root / "machine-b" / "run1"
    shutil.copytree(first, second)
    doc = json.loads((second / "results.json").read_text())
    doc["machine"].update(machine_id="other-cpu-64c-linux", cpu_model="Other CPU", cpu_count=64)
    doc["schema"] = 2
    del doc["verdicts"][0]["ci"], doc["verdicts"][0]["confidence"]
    doc["verdicts"][0].update(ratio=1.25, ci95=[1.2, 1.3], significant=True, text=f"{name}#2 1.25× faster")
    (second / "results.json").write_text(json.dumps(doc))
    return root, first, second, name


def test_merges_two_machines_into_one_page_and_figure(two_machines, tmp_path, capsys):
    root, first, second, name = two_machines
    out = tmp_path / "report"
    assert main(["report", str(first), str(second), "--out", str(out)]) == 0
    page = (out / "report.md").read_text()
    assert "2 result(s) from 2 machine(s)" in page
    first_doc = json.loads((first / "results.json").read_text())
    mine = first_doc["verdicts"][0]
    assert first_doc["machine"]["machine_id"] in page and "other-cpu-64c-linux" in page
    assert f"{mine['ratio']:.3f} ({mine['ci'][0]:.3f}–{mine['ci'][1]:.3f}, 95 % CI)" in page
    assert "1.250 (1.200–1.300, 95 % CI)" in page and f"{name}#2 1.25× faster" in page
    # each row says how it ran: device and threads, commit, versions, noise flags
    threads = first_doc["config"]["threads"]
    assert f"cpu, {threads} threads" in page and (first_doc["environment"]["git_commit"] or "no git")[:8] in page
    assert first_doc["environment"]["frameworks"][name]["version"] in page
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1.250" in capsys.readouterr().out
    assert " s " not in page  # no absolute seconds pooled across machines


def test_a_folder_of_results_is_searched(two_machines, tmp_path):
    root, *_ = two_machines
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out)]) == 0
    assert "2 result(s) from 2 machine(s)" in (out / "report.md").read_text()


@pytest.mark.parametrize("content,message", [
    (None, "no results.json inside"),
    ("{not json", "not a readable results.json"),
    ('{"schema": 1}', "results schema 1, this twincnn reads schemas 2, 3"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "results.json").write_text(content)
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
