"""`twincnn compare --ranks R`: each framework in one process and as R data-parallel ranks in one schedule, its
scaling judged against itself and the ranks of different frameworks against each other."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import frameworks, session_processes
from tests.mnist_files import tiny_arrays, write_idx_dir
from twincnn import backends
from twincnn.cli import main
from twincnn.compare.output import scaling_lines


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_idx_dir(tmp_path_factory.mktemp("tiny") / "idx", tiny_arrays(640, 200, seed=5), gz=True)


@pytest.fixture(scope="module")
def ranks_run(tmp_path_factory, tiny_dir):
    """Two frameworks, each once alone and once as 2 ranks: 2 epochs x 1 repeat on tiny data, blocks of 5."""
    names = frameworks(2, distinct=True)
    out = tmp_path_factory.mktemp("ranks") / "out"
    rc = main(["compare", "--no-progress", "--no-floor", "--out", str(out), "--frameworks", ",".join(names),
               "--ranks", "2", "--threads", "2", "--data", str(tiny_dir), "--epochs", "2", "--repeats", "1",
               "--block-steps", "5"])
    assert rc == 0
    return names, json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def test_each_framework_runs_alone_and_as_ranks_with_the_same_threads(ranks_run):
    names, doc, _ = ranks_run
    a, b = names
    assert doc["config"]["labels"] == [a, f"{a}x2", b, f"{b}x2"] and doc["config"]["ranks"] == [1, 2, 1, 2]
    for name in names:
        environment = doc["environment"]["frameworks"][f"{name}x2"]
        assert environment["ranks"] == 2 and environment["engine"] == backends.load_parallel(name).ENGINE
        assert environment["process_group_backend"] in ("gloo", "RING")
        threads = [doc["frameworks"][label]["runs"][0]["threads"]["intra_op_threads"] for label in (name, f"{name}x2")]
        assert threads == [2, 2], f"{name}: one process and its ranks together must have the same threads, {threads}"


def test_ranks_train_as_the_one_process_does(ranks_run):
    """Same weights, batches and Adam: the per-epoch training losses of a framework's ranks and of its one
    process agree to float32 rounding (a rank training on the wrong slice moves them by ~1e-2 here)."""
    names, doc, _ = ranks_run
    for name in names:
        one, ranks = (doc["frameworks"][label]["runs"][0]["history"]["train_loss"] for label in (name, f"{name}x2"))
        worst = np.max(np.abs(np.array(ranks) / np.array(one) - 1))
        assert worst <= 1e-3, f"{name}: epoch losses {ranks} with 2 ranks, {one} in one process"


def test_scaling_and_the_cross_framework_verdicts_in_one_process_and_at_r_ranks(ranks_run):
    names, doc, _ = ranks_run
    a, b = names
    assert [v["frameworks"] for v in doc["verdicts"]] == [[a, f"{a}x2"], [b, f"{b}x2"], [a, b], [f"{a}x2", f"{b}x2"]]
    assert all(v["family"] == "Holm over 4 comparisons" for v in doc["verdicts"])
    assert [row["framework"] for row in doc["scaling"]] == names
    for row, verdict in zip(doc["scaling"], doc["verdicts"]):
        assert row["speedup"] == verdict["ratio"] and row["ci"] == verdict["ci"]
        assert row["efficiency"] == pytest.approx(verdict["ratio"] / 2) and row["launcher"] == "local"
        assert "not a cluster" in row["note"]
    assert all(f"- {line}" in ranks_run[2] for line in scaling_lines(doc["scaling"]))  # report.md says it too


@pytest.mark.parametrize("ci,printed", [((0.9951, 1.00049), "0.99–1.01"), ((0.85, 0.9999), "0.8500–0.9999"),
                                        ((1.0004, None), "1.0004–∞")])
def test_printed_speedup_bounds_never_contradict_the_interval(ci, printed):
    """Rounded outward, with the digits that keep 1 inside or outside as the exact interval has it."""
    row = {"framework": "f", "ranks": 2, "speedup": 1.0, "ci": list(ci), "confidence": 0.95, "efficiency": 0.5,
           "note": "n"}
    assert f"CI {printed})" in scaling_lines([row])[0]


@pytest.mark.parametrize("args,message", [
    (["--protocol", "notebook"], "--ranks trains on the shared batch order: use --protocol fair"),
    (["--batch-size", "63"], "--batch-size 63 cannot be split evenly over 2 ranks; use a multiple of 2"),
    (["--threads", "3"], "3 threads cannot be shared evenly by 2 ranks; use --threads with a multiple of 2"),
    (["--variant", "idiomatic"], "--ranks compares each framework's data-parallel loop with its tuned one-process "
                                 "loop: use --variant tuned"),
    (["--device", "cuda"], "--ranks trains its ranks on the CPU: use --device cpu"),
])
def test_bad_ranks_options_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    rc = main(["compare", "--no-progress", "--out", str(out), "--frameworks", frameworks(1)[0], "--ranks", "2",
               *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_framework_without_a_data_parallel_twin_is_refused_before_training(tmp_path, capsys, monkeypatch):
    import dataclasses

    name = frameworks(1)[0]
    monkeypatch.setitem(backends.BACKENDS, name, dataclasses.replace(backends.BACKENDS[name], parallel=None))
    rc = main(["compare", "--no-progress", "--out", str(tmp_path / "out"), "--frameworks", name, "--ranks", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{backends.BACKENDS[name].label} has no data-parallel twin yet" in err, err


def _rank_of(pid: int) -> str | None:
    variables = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    return variables.get("RANK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_rank_ends_the_compare_in_one_line_and_leaves_no_process(tmp_path, tiny_dir):
    """One rank killed: the other fails or waits in its collective; the run ends naming the rank killed."""
    name = frameworks(1)[0]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "twincnn", "compare", "--frameworks", name, "--ranks", "2", "--data", str(tiny_dir),
           "--epochs", "50", "--repeats", "1", "--no-floor", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while len(workers := [p for p in session_processes(proc.pid) if p != proc.pid]) < 3 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(5)  # let them join their process group and start training
    os.kill(next(pid for pid in workers if _rank_of(pid) == "1"), signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert f"the {name}x2 rank 1 worker was killed by SIGKILL" in last, err
    # the surviving rank may print its engine's error about the lost peer; the parent prints no traceback
    assert "compare/command.py" not in err and "compare/workers.py" not in err, err
    time.sleep(0.5)
    assert session_processes(proc.pid) == [], "a worker outlived the parent"
    assert not out.exists()
