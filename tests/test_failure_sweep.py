"""Every command against every failure that applies to it: the right exit code, one line on stderr (two at most),
no framework's start-up notice, no traceback but the frames of the user's own file, no process left running
and no results directory written.

Commands run in this process through twincnn.cli.main where only the failure is under test, and in a
subprocess where a signal or a real start-up is (a killed rank, Ctrl-C, a Keras file imported before twincnn
could quiet TensorFlow). What test_compare.py, test_compare_ranks.py, test_parallel.py and test_error_paths.py
assert already is not repeated here.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import child_processes, environment_of, frameworks, require, session_processes, shell_environment
from tests.mnist_files import tiny_arrays, write_npz
from twincnn import backends
from twincnn.cli import main
from twincnn.compare import workers

NOTICES = ("absl::InitializeLog", "oneDNN custom operations", "rebuild TensorFlow", "cpu_feature_guard", "[Gloo]")
COMPARE = ["compare", "--repeats", "1", "--epochs", "1", "--no-floor", "--no-progress"]
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    """256 training images (4 steps of 64), 64 test images."""
    return write_npz(tmp_path_factory.mktemp("tiny") / "tiny.npz", tiny_arrays(256, 64, seed=3))


def failure_lines(err: str, most: int = 2) -> list[str]:
    """The failure's lines, checked: at most ``most``, no traceback, no framework notice."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= most, err
    assert "Traceback" not in err and not any(notice in err for notice in NOTICES), err
    return lines


def kept_log(line: str) -> Path:
    """The log file a failure's line names; the test removes it."""
    found = re.search(r"output is kept in (\S+\.log)$", line)
    assert found, line
    return Path(found.group(1))


def assert_nothing_left(before: set) -> None:
    """No child of this process but those it had ``before`` the run (earlier tests' helpers, such as
    multiprocessing's resource tracker, live as long as the test session)."""
    deadline = time.monotonic() + 5
    while set(child_processes(os.getpid())) - before and time.monotonic() < deadline:  # killed, being reaped
        time.sleep(0.1)
    assert set(child_processes(os.getpid())) - before == set(), "a worker outlived the run"


# -- bad arguments, bad files, a missing framework: one line, in this process --------------------------------
@pytest.mark.parametrize("argv", [
    ["compare", "--epochs", "0"], ["compare", "--ranks", "0"], ["check"], ["port", "w.pt"],
    ["summary", "--frameworks"], ["audit", "--nope"], ["data", "--nope"], ["report"], ["nope"]])
def test_a_bad_argument_is_argparse_s_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    [line] = failure_lines(capsys.readouterr().err, most=1)
    assert exit.value.code == 2 and line.startswith("twincnn") and ": error: " in line, line


@pytest.mark.parametrize("argv,missing", [
    (["compare", "--data", "{tmp}/none.npz"], "none.npz"),
    (["compare", "--ranks", "2", "--spec", "{tmp}/none.json"], "none.json"),
    (["check", "{tmp}/none.py:build", "{tmp}/none.py:build"], "none.py: no such file"),
    (["port", "{tmp}/none.pt", "{tmp}/out/w.keras"], "none.pt"),
    (["summary", "--spec", "{tmp}/none.json"], "none.json"),
    (["data", "--data", "{tmp}/none.npz"], "none.npz"),
    (["report", "{tmp}/none"], "none"),
])
def test_a_missing_file_is_one_line_and_writes_nothing(tmp_path, capsys, argv, missing):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    if argv[0] == "compare":
        argv += ["--frameworks", frameworks(1)[0], "--out", str(tmp_path / "out")]
    rc = main(argv)
    [line] = failure_lines(capsys.readouterr().err, most=1)
    assert rc == 2 and line.startswith(f"twincnn {argv[0]}: error: ") and missing in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["compare", "--frameworks", "torch"],
                                  ["compare", "--ranks", "2", "--frameworks", "torch"],
                                  ["check", "{tmp}/a.pt", "{tmp}/b.pt"], ["port", "{tmp}/a.pt", "{tmp}/out/w.keras"]])
def test_a_missing_framework_is_one_line_naming_the_install(tmp_path, capsys, monkeypatch, argv):
    for name in ("a.pt", "b.pt"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setattr(backends, "is_available", lambda name: False)
    argv = [arg.format(tmp=tmp_path) for arg in argv] + (["--out", str(tmp_path / "out")] if argv[0] == "compare"
                                                         else [])
    rc = main(argv)
    [line] = failure_lines(capsys.readouterr().err, most=1)
    assert rc == 2 and line.endswith("torch is not installed: pip install 'twincnn[torch]'"), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,says", [(["summary", "--frameworks", "torch"], "torch: skipped (torch is not installed"),
                                       (["audit"], "(not installed)")])
def test_commands_that_read_every_framework_say_which_is_missing_and_go_on(capsys, monkeypatch, argv, says):
    monkeypatch.setattr(backends, "is_available", lambda name: False)
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0 and says in out and err == "", err


# -- the user's own code: its frames only, and one line naming the file and the call ------------------------
USER_ERRORS = {
    "a factory that raises": ("def build():\n    return helper(0)\n\n\ndef helper(n):\n    return 1 / n\n",
                              "u.py:build raised ZeroDivisionError (traceback above)", "return 1 / n"),
    "a file whose import raises": ("rate = 1 / 0\n", "importing u.py raised ZeroDivisionError (traceback above)",
                                   "rate = 1 / 0"),
    "a syntax error": ("def build(:\n    pass\n", "importing u.py raised SyntaxError (traceback above)", "def build(:"),
    "a RuntimeError, a bug's type elsewhere, raised by the user's code": (
        "def build():\n    raise RuntimeError('cannot build')\n", "u.py:build raised RuntimeError (traceback above)",
        "RuntimeError: cannot build"),
}


@pytest.mark.parametrize("command", [["check", "u.py:build", "u.py:build"], ["spec", "u.py:build"]])
@pytest.mark.parametrize("case", USER_ERRORS)
def test_an_error_in_the_user_s_file_shows_its_frames_only(tmp_path, capsys, monkeypatch, case, command):
    source, last, shown = USER_ERRORS[case]
    (tmp_path / "u.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    rc = main(command)
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines()[-1] == f"twincnn {command[0]}: error: {last}", err
    assert shown in err and "twincnn/" not in err and "importlib" not in err, err
    frames = [line for line in err.splitlines() if line.lstrip().startswith("File ")]
    assert frames and all(re.search(r'File ".*u\.py"', line) for line in frames), err


@pytest.mark.torch
def test_an_error_in_the_user_s_forward_names_the_method(tmp_path, capsys, monkeypatch):
    require("torch")
    (tmp_path / "u.py").write_text(textwrap.dedent("""
        import torch


        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(784, 10)

            def forward(self, x):
                return self.fc(x.flatten(1)) / (1 // 0)
    """))
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "u.py:Net", "u.py:Net"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines()[-1] == ("twincnn check: error: u.py:Net.forward raised "
                                                        "ZeroDivisionError (traceback above)"), err
    assert "torch/nn" not in err and "twincnn/" not in err, err


@pytest.mark.parametrize("where", ["import twincnn_no_such_package\n",
                                   "def build():\n    import twincnn_no_such_package.layers\n"])
def test_a_package_the_user_s_file_imports_but_is_not_installed_is_one_line(tmp_path, capsys, monkeypatch, where):
    (tmp_path / "u.py").write_text(where)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "u.py:build", "u.py:build"]) == 2
    [line] = failure_lines(capsys.readouterr().err, most=1)
    assert line == ("twincnn check: error: u.py: imports 'twincnn_no_such_package', which is not installed: "
                    "pip install twincnn_no_such_package")


# -- a user's file that imports Keras before twincnn could quiet TensorFlow: a real start-up ------------------
def _check_keras_file(tmp_path, *options):
    """`twincnn check` of a file that imports Keras first, in a fresh process whose shell set no log variable."""
    (tmp_path / "k.py").write_text("import keras\n\n\ndef build():\n    return keras.Sequential()\n")
    return subprocess.run([sys.executable, "-m", "twincnn", *options, "check", "k.py:nope", "k.py:build"],
                          cwd=tmp_path, capture_output=True, text=True, env=shell_environment())


@pytest.mark.tensorflow
def test_tensorflow_s_start_up_notices_stay_off_a_failing_check_of_a_keras_file(tmp_path):
    require("tensorflow")
    done = _check_keras_file(tmp_path)
    [line] = failure_lines(done.stderr, most=1)
    assert done.returncode == 2 and line == ("twincnn check: error: k.py: defines no 'nope'; name a model, a class "
                                             "or a function returning a model"), done.stderr


@pytest.mark.tensorflow
def test_verbose_shows_tensorflow_s_start_up_notices(tmp_path):
    require("tensorflow")
    done = _check_keras_file(tmp_path, "--verbose")
    assert done.returncode == 2 and "oneDNN custom operations" in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("twincnn check: error: k.py: defines no 'nope'")


# -- a bug in a worker: its own traceback, none of the parent's, and not the other ranks' -------------------
BROKEN_WORKER = """
import os, sys
from twincnn.compare import worker

step = worker.EpochClock.step


def broken(self, done):
    if {condition}:
        raise ArithmeticError("a deliberate bug in the worker")
    step(self, done)


worker.EpochClock.step = broken
sys.exit(worker.main())
"""


@needs_proc
@pytest.mark.torch
@pytest.mark.parametrize("ranks,condition,culprit", [
    (1, "done == 1", "torch"),
    # rank 1 fails inside a block: rank 0 then fails in its all-reduce, and its error stays in the log
    (2, "os.environ.get('RANK') == '1' and done == 1", "torchx2 rank 1"),
])
def test_a_bug_in_a_worker_shows_its_traceback_alone(tmp_path, capsys, monkeypatch, tiny_npz, ranks, condition,
                                                      culprit):
    require("torch")
    monkeypatch.setattr(workers, "WORKER_COMMAND", [sys.executable, "-c", BROKEN_WORKER.format(condition=condition)])
    before = set(child_processes(os.getpid()))
    out = tmp_path / "out"
    rc = main([*COMPARE, "--frameworks", "torch", "--ranks", str(ranks), "--threads", "2", "--block-steps", "2",
               "--data", str(tiny_npz), "--out", str(out)])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    log = kept_log(last)
    try:
        assert rc == 1 and last.startswith(f"twincnn compare: error: the {culprit} worker exited with code 1 before "
                                           f"sending 'block' (its traceback, if any, is above)"), err
        assert err.count("Traceback") == 1 and "ArithmeticError: a deliberate bug in the worker" in err, err
        assert "compare/workers.py" not in err and "[rank0]" not in err, "the parent's or a survivor's traceback"
        assert "ArithmeticError" in log.read_text()
        if ranks > 1:
            assert "--- torchx2 rank 0 ---" in log.read_text(), "the survivor's error is kept"
    finally:
        log.unlink()
    assert_nothing_left(before)
    assert not out.exists()


# -- a rank killed from outside, Ctrl-C: real signals, so a subprocess ---------------------------------------
def _start_ranks_compare(tmp_path, tiny_npz, name):
    """A compare of ``name`` alone and as 2 ranks in its own session, a few seconds after its ranks started."""
    command = [sys.executable, "-m", "twincnn", *COMPARE, "--frameworks", name, "--ranks", "2", "--threads", "2",
               "--epochs", "40", "--block-steps", "2", "--data", str(tiny_npz), "--out", str(tmp_path / "out")]
    # SIGINT at its default: a test runner started in the background passes it on ignored
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while len(ranks := [pid for pid in child_processes(proc.pid) if "RANK" in environment_of(pid)]) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the ranks did not start"
        time.sleep(0.2)
    time.sleep(4)  # past the ranks' start-up, into the schedule
    return proc, ranks


def _ended(proc, tmp_path) -> str:
    _, err = proc.communicate(timeout=60)
    time.sleep(0.5)
    assert session_processes(proc.pid) == [], "a worker outlived the parent"
    assert not (tmp_path / "out").exists()
    return err


@needs_proc
@pytest.mark.parametrize("name", [
    "torch", pytest.param("tensorflow", marks=pytest.mark.slow), pytest.param("jax", marks=pytest.mark.slow)])
def test_a_rank_killed_from_outside_ends_the_run_in_one_line(tmp_path, tiny_npz, name):
    require(name)
    proc, ranks = _start_ranks_compare(tmp_path, tiny_npz, name)
    os.kill(next(pid for pid in ranks if environment_of(pid).get("RANK") == "1"), signal.SIGKILL)
    err = _ended(proc, tmp_path)
    [line] = failure_lines(err, most=1)
    assert proc.returncode == 2 and line.startswith(f"twincnn compare: error: the {name}x2 rank 1 worker was killed "
                                                    f"by SIGKILL"), err
    if "output is kept in" in line:  # what the surviving rank wrote, if it wrote anything before it was stopped
        log = kept_log(line)
        assert log.read_text().startswith("--- "), log
        log.unlink()


@needs_proc
@pytest.mark.torch
def test_ctrl_c_during_a_ranks_run_is_one_line(tmp_path, tiny_npz):
    require("torch")
    proc, _ = _start_ranks_compare(tmp_path, tiny_npz, "torch")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    err = _ended(proc, tmp_path)
    assert proc.returncode == 130 and failure_lines(err, most=1) == ["twincnn compare: interrupted"], err
