"""`twincnn compare` on small data: worker processes, the interleaved schedule, verdicts, outputs, errors.

Each compare here starts real worker processes (one per framework and repeat), so the runs are few
and small; the statistics behind the verdict are tested on synthetic times in test_stats.py.
"""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import cpu_hogs, frameworks, session_processes, stop_all
from tests.mnist_files import tiny_arrays, write_idx_dir
from twincnn import backends, machine
from twincnn.cli import main
from twincnn.compare.command import default_out, worker_labels
from twincnn.compare.output import atomic_directory
from twincnn.compare.schedule import interleaved
from twincnn.compare.worker import cross_entropy

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_idx_dir(tmp_path_factory.mktemp("tiny") / "idx", tiny_arrays(640, 200, seed=5), gz=True)


def compare(tmp_path, *args, name="out"):
    out = tmp_path / name
    rc = main(["compare", "--no-progress", "--no-floor", "--out", str(out), *args])
    return rc, out


@pytest.fixture(scope="module")
def two_run(tmp_path_factory, tiny_dir):
    """One fair compare of two workers: 3 epochs x 2 repeats on tiny data (10 steps an epoch), in blocks of
    5 steps."""
    names = frameworks(2)
    out = tmp_path_factory.mktemp("two") / "out"
    rc = main(["compare", "--no-progress", "--out", str(out), "--frameworks", ",".join(names),
               "--data", str(tiny_dir), "--epochs", "3", "--repeats", "2", "--block-steps", "5"])
    assert rc == 0
    return names, out, json.loads((out / "results.json").read_text())


def test_results_hold_verdicts_with_a_ci(two_run):
    names, out, doc = two_run
    labels = worker_labels(names)
    assert doc["schema"] == 3 and doc["config"]["labels"] == labels
    (verdict,) = doc["verdicts"]
    assert verdict["frameworks"] == labels
    low, high = verdict["ci"]
    assert low <= verdict["ratio"] <= high and isinstance(verdict["significant"], bool)
    assert verdict["text"] and verdict["epochs"] == "2..3" and verdict["units"] == 2
    # the ratio is time(first) / time(second) over the steady-state blocks, paired block by block
    runs = [doc["frameworks"][label]["runs"] for label in labels]
    steady = [[np.ravel(r["history"]["block_seconds"][1:]) for r in label_runs] for label_runs in runs]
    assert all(len(blocks) == 4 for label_blocks in steady for blocks in label_blocks)  # 2 epochs x 2 blocks
    logs = [np.mean(np.log(a) - np.log(b)) for a, b in zip(*steady)]
    assert verdict["ratio"] == pytest.approx(np.exp(np.mean(logs)))
    assert doc["floor"]["matmul_gflops"] > 0 and doc["floor"]["threads"] == doc["config"]["threads"]
    assert verdict["confidence"] == 0.95 and verdict["family"] is None  # one comparison: no Holm adjustment
    for name in ("results.json", "report.md", "schedule.png", "loss_accuracy.png", "confusion_matrices.png",
                 "verdicts.png", "epoch_times.png"):
        assert (out / name).is_file()
    assert verdict["text"] in (out / "report.md").read_text()


def test_blocks_ran_interleaved_and_never_together(two_run):
    names, _, doc = two_run
    labels = worker_labels(names)
    assert doc["config"]["block_steps"] == 5 and doc["config"]["steps_per_epoch"] == 10
    for repeat in range(2):
        blocks = [(b["position"], b["epoch"], b["block"], slot, b["start"], b["end"])
                  for slot, label in enumerate(labels)
                  for b in doc["frameworks"][label]["runs"][repeat]["schedule"]]
        blocks.sort()
        assert [(epoch, block, slot) for _, epoch, block, slot, _, _ in blocks] == interleaved(2, 3, repeat, 2)
        for before, after in zip(blocks, blocks[1:]):  # one worker trains at a time, in schedule order
            assert before[5] <= after[4], f"blocks overlap: {before} and {after}"
    for label in labels:  # an epoch's time is its blocks' and its steps are theirs
        for run in doc["frameworks"][label]["runs"]:
            assert [sum(b) for b in run["history"]["block_seconds"]] == pytest.approx(run["history"]["epoch_seconds"])
            assert [b["steps"] for b in run["schedule"]] == [5, 5] * 3


def test_each_repeat_is_a_fresh_process_per_framework(two_run):
    names, _, doc = two_run
    runs = [doc["frameworks"][label]["runs"] for label in worker_labels(names)]
    assert [r["seed"] for r in runs[0]] == [42, 43]
    pids = [r["pid"] for label_runs in runs for r in label_runs]
    assert len(set(pids)) == 4 and os.getpid() not in pids


def assert_same_training(doc, what):
    """Same initial weights, batches and Adam in every worker: the per-epoch training losses agree to float32
    rounding (a different batch order or update moves them by ~1e-2 here)."""
    a, b = (doc["frameworks"][label]["runs"] for label in doc["config"]["labels"])
    for ra, rb in zip(a, b):
        la, lb = np.array(ra["history"]["train_loss"]), np.array(rb["history"]["train_loss"])
        worst = np.max(np.abs(la / lb - 1))
        assert worst <= 1e-3, f"{what}: epoch losses {la} vs {lb} differ by {worst:.2g} (relative)"
    assert doc["verdicts"][0]["prediction_agreement"] >= 0.99


def test_fair_twins_train_alike(two_run):
    frameworks(2, distinct=True)  # two different frameworks, or a skip that says so: an A/A run proves nothing here
    assert_same_training(two_run[2], "tuned")


def test_fair_idiomatic_twins_train_alike(tmp_path, tiny_dir):
    """The idiomatic loops (Keras fit() over the shared batches, a DataLoader with the shared order as its
    sampler) see the same batches as each other."""
    names = frameworks(2, distinct=True)
    rc, out = compare(tmp_path, "--variant", "idiomatic", "--frameworks", ",".join(names), "--data", str(tiny_dir),
                      "--epochs", "2", "--repeats", "1")
    assert rc == 0
    assert_same_training(json.loads((out / "results.json").read_text()), "idiomatic")


@pytest.fixture(scope="module")
def a_a_run(tmp_path_factory, tiny_dir):
    """One framework twice under `--precision` with no time to spare: the A/A self-test, stopped after its
    planned repeats (at least 3). (name, out folder, results.json, what it printed)"""
    name = frameworks(1)[0]
    out = tmp_path_factory.mktemp("a_a") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["compare", "--no-progress", "--no-floor", "--out", str(out), "--frameworks", f"{name},{name}",
                   "--data", str(tiny_dir), "--epochs", "1", "--repeats", "2", "--precision", "0.001",
                   "--max-minutes", "0.001"])
    assert rc == 0, printed.getvalue()
    return name, out, json.loads((out / "results.json").read_text()), printed.getvalue()


def test_same_framework_twice_is_the_a_a_self_test(a_a_run):
    name, _, doc, _ = a_a_run
    (verdict,) = doc["verdicts"]
    assert verdict["frameworks"] == [name, f"{name}#2"]
    # two processes, the same seed: the same computation, so identical models
    assert verdict["prediction_agreement"] == 1.0 and verdict["accuracy_gap"] == 0.0
    a, b = (doc["frameworks"][label]["runs"] for label in verdict["frameworks"])
    assert [r["history"]["train_loss"] for r in a] == [r["history"]["train_loss"] for r in b]


def test_precision_out_of_time_stops_after_the_planned_repeats_and_says_so(a_a_run):
    """A target no run reaches, in a time no repeat fits: the planned repeats (at least 3), each followed by the
    pair's half-width against the target, then one line saying it was not reached; results.json records it."""
    name, out, doc, printed = a_a_run
    asked = doc["precision"]
    assert asked["stopped"] == "out of time" and asked["target"] == 0.001 and asked["max_minutes"] == 0.001
    assert asked["planned_repeats"] == asked["repeats"] == 3 and doc["config"]["seeds"] == [42, 43, 44]
    (verdict,) = doc["verdicts"]
    low, high = verdict["ci"]
    assert asked["reached"] == pytest.approx((high - low) / 2 / verdict["ratio"]) and asked["reached"] > 0.001
    assert f"after 3 repeats: {name}/{name}#2 " in printed and "(target ±0.1%)" in printed
    assert "precision: ±0.1% not reached in 0.001 minutes" in printed
    assert "not reached in 0.001 minutes" in (out / "report.md").read_text()


def test_single_framework_has_no_verdict(tmp_path, tiny_dir):
    name = frameworks(1)[0]
    rc, out = compare(tmp_path, "--frameworks", name, "--data", str(tiny_dir), "--epochs", "1", "--repeats", "1",
                      "--variant", "idiomatic")
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert list(doc["frameworks"]) == [name] and doc["verdicts"] == []
    assert doc["frameworks"][name]["variant"] == "idiomatic"


def test_notebook_protocol_runs_each_framework_its_own_way(tmp_path, tiny_dir):
    names = frameworks(2)
    rc, out = compare(tmp_path, "--protocol", "notebook", "--frameworks", ",".join(names), "--data",
                      str(tiny_dir), "--epochs", "2", "--repeats", "1")
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["protocol"] == "notebook" and doc["config"]["variant"] == "idiomatic"
    for fig in doc["frameworks"].values():
        assert len(fig["history"]["epoch_seconds"]) == 2 and fig["variant"] == "idiomatic"
    if names[0] != names[1]:  # own initialisers and Adam: the twins no longer compute the same thing
        assert doc["verdicts"][0]["prediction_agreement"] < 1.0
    assert doc["config"]["block_steps"] == 0  # whole epochs: Keras validates inside its last block only
    includes = [f"{label}'s time includes {backends.load(name).NOTEBOOK_TIMING}"
                for name, label in zip(names, worker_labels(names)) if backends.load(name).NOTEBOOK_TIMING]
    note = doc["verdicts"][0]["timing_note"]
    assert note == ("; ".join(includes) or None)
    if includes:
        assert note in (out / "report.md").read_text()


@pytest.mark.parametrize("args,message", [
    (["--frameworks", "mxnet"], "unknown framework 'mxnet'"),
    (["--data", "/nonexistent"], "no such file or directory"),
    (["--spec", "/nonexistent.json"], "no such spec file"),
    (["--device", "cuda", "--protocol", "notebook"], "--protocol notebook reproduces a CPU run"),
    (["--max-minutes", "5"], "--max-minutes bounds the repeats --precision adds; give --precision P as well"),
    (["--precision", "0.03"], "one framework has none: name two or more with --frameworks"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    rc, out = compare(tmp_path, *(args if "--frameworks" in args else ["--frameworks", frameworks(1)[0]] + args))
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_worker_refusing_its_job_is_one_line(tmp_path, capfd, tiny_dir):
    """No GPU here: the worker says so before anything trains, and the parent writes nothing."""
    name = frameworks(1)[0]
    if backends.load(name).environment().get("cuda") or backends.load(name).environment().get("gpus"):
        pytest.skip("a GPU is present")
    rc, out = compare(tmp_path, "--frameworks", name, "--device", "cuda", "--data", str(tiny_dir), "--epochs", "1",
                      "--repeats", "1")
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and "cuda" in err[-1] and err[-1].startswith("twincnn compare: error:")
    assert not out.exists()


def test_bad_number_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        compare(tmp_path, "--epochs", "0")
    assert exc.value.code == 2 and "expected a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare(tmp_path, "--noise-threshold", "1.5")
    assert "between 0 and 1" in capsys.readouterr().err
    for bad in ("-1", "ten"):  # 0 is allowed: whole epochs
        with pytest.raises(SystemExit):
            compare(tmp_path, "--block-steps", bad)
        assert f"argument --block-steps: expected a whole number >= 0, got '{bad}'" in capsys.readouterr().err


def test_out_dir_not_empty_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, _ = compare(tmp_path, "--quick", "--frameworks", frameworks(1)[0])
    assert rc == 2 and "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_interrupt_stops_every_worker_and_leaves_nothing(tmp_path, tiny_dir, how):
    """Ctrl-C reaches the whole process group; a kill (SIGTERM) reaches the parent alone."""
    name = frameworks(1)[0]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "twincnn", "compare", "--frameworks", f"{name},{name}", "--data", str(tiny_dir),
           "--epochs", "50", "--repeats", "1", "--no-floor", "--out", str(out)]
    # SIGINT restored to its default: a test runner started in the background inherits it ignored, and a
    # process that ignores Ctrl-C cannot show what Ctrl-C does.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while len(session_processes(proc.pid)) < 3 and time.time() < deadline:  # parent and both workers
        time.sleep(0.2)
    time.sleep(3)  # let them import and start training
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    else:
        proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err.strip().splitlines()[-1]
    time.sleep(0.5)
    assert session_processes(proc.pid) == [], "a worker outlived the parent"
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_worker_killed_from_outside_ends_the_run_in_one_line(tmp_path, tiny_dir):
    """The out-of-memory killer or a user's kill -9 on one worker: the run ends with one line naming the
    worker and the signal, writes nothing, and leaves no worker behind."""
    name = frameworks(1)[0]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "twincnn", "compare", "--frameworks", f"{name},{name}", "--data", str(tiny_dir),
           "--epochs", "50", "--repeats", "1", "--no-floor", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while len(workers := [p for p in session_processes(proc.pid) if p != proc.pid]) < 2 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # let them import and start training
    os.kill(max(workers), signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert "worker was killed by SIGKILL" in last and "Traceback" not in err, err
    time.sleep(0.5)
    assert session_processes(proc.pid) == [], "a worker outlived the parent"
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_interrupted_run_leaves_nothing(tmp_path):
    final = tmp_path / "res"
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(final) as tmp:
            (tmp / "results.json").write_text("{}")
            raise KeyboardInterrupt
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_default_results_folder_names_machine_time_and_commit(tmp_path):
    out = default_out(tmp_path, commit="0123456789abcdef")
    assert out.parent.name == machine.machine_id() and out.parent.parent == tmp_path
    stamp, commit = out.name.split("-", 1)
    assert stamp.endswith("Z") and len(stamp) == 16 and commit == "01234567"
    assert default_out(tmp_path).name.endswith("-nogit")  # outside a git checkout


def test_machine_id_is_readable_and_ignores_the_host_name():
    assert machine.machine_id("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", 2, "Linux") == \
        "intel-xeon-platinum-8481c-2c-linux"
    assert machine.machine_id("", 8, "Darwin") == "unknown-cpu-8c-darwin"
    assert set(machine.describe()) >= {"machine_id", "cpu_model", "cpu_count", "os"}


def test_busy_share_counts_what_was_not_idle():
    before = {"cpu_jiffies": 1000, "idle_jiffies": 800}
    assert machine.busy_share(before, {"cpu_jiffies": 1200, "idle_jiffies": 950}) == pytest.approx(0.25)
    assert machine.busy_share(before, before) is None and machine.busy_share({}, before) is None
    reading = machine.load_reading()
    if reading:  # Linux: the fields the noise flags read
        assert reading["cpu_jiffies"] >= reading["idle_jiffies"] >= 0 and "loadavg_1min" in reading


def test_worker_labels_number_repeated_frameworks():
    assert worker_labels(["torch", "torch", "jax", "torch"]) == ["torch", "torch#2", "jax", "torch#3"]


def test_cross_entropy_matches_definition():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 2])
    p0 = np.exp(2) / (np.exp(2) + 1 + np.exp(-1))
    assert cross_entropy(logits, labels) == pytest.approx((-np.log(p0) - np.log(1 / 3)) / 2)


def test_waiting_workers_use_no_cpu_and_each_run_records_it(two_run):
    """CPU a worker used while it waited for "go" ran inside another worker's timed epoch: recorded per
    epoch and per run, and ~0 for the tuned loops (no prefetch, no spinning pool)."""
    names, _, doc = two_run
    for label in worker_labels(names):
        for run in doc["frameworks"][label]["runs"]:
            per_epoch = [e["waiting_cpu_seconds"] for e in run["schedule"]]
            assert run["waiting_cpu_seconds"] == pytest.approx(sum(per_epoch))
            assert max(per_epoch) <= 0.05, f"{label} used {per_epoch} s of CPU while waiting"


def test_each_epoch_says_where_its_time_went(two_run):
    """Its slowest step (number, seconds, CPU seconds) lies within the epoch and used no more CPU than the
    process's CPUs give in its time; the time outside its steps is the rest of the epoch's."""
    names, _, doc = two_run
    cpus = machine.usable_cpus()
    for label in worker_labels(names):
        for run in doc["frameworks"][label]["runs"]:
            breakdown = run["epoch_breakdown"]
            for epoch, seconds in enumerate(run["history"]["epoch_seconds"]):
                step, step_seconds, step_cpu = breakdown["slowest_step"][epoch]
                outside = breakdown["outside_steps_seconds"][epoch]
                assert 1 <= step <= 10 and 0 < step_seconds <= seconds and 0 <= outside < seconds, (label, epoch)
                assert 0 <= step_cpu <= cpus * step_seconds + 0.01, f"{label}: {step_cpu} s of CPU in {step_seconds} s"


def test_a_worker_wraps_up_before_the_next_go_and_exits_after_the_schedule(monkeypatch):
    """Every worker's epoch report (untimed evaluation) and "done" (its trainer's wrap-up) come before
    anyone's next "go"; no worker is closed (and so tears down) before the last block of the repeat."""
    from twincnn.compare import workers

    events = []

    class Recorder:
        def __init__(self, job):
            self.label = job["label"]

        def expect(self, event):
            events.append((event, self.label))
            return {"event": event}

        def train_block(self):
            events.append(("go", self.label))
            return {"event": "block"}

        def close(self):
            events.append(("close", self.label))

        def stop(self):
            pass

    monkeypatch.setattr(workers, "Worker", Recorder)
    job = {"epochs": 2, "steps_per_epoch": 10, "block_steps": 0}
    workers.run_repeat([{**job, "label": "a"}, {**job, "label": "b"}], repeat=0)
    # repeat 0 of two 2-epoch workers runs A1 B1 A2 B2: A's wrap-up before B's last "go"
    assert events == [("ready", "a"), ("ready", "b"), ("go", "a"), ("epoch", "a"), ("go", "b"), ("epoch", "b"),
                      ("go", "a"), ("epoch", "a"), ("done", "a"), ("go", "b"), ("epoch", "b"), ("done", "b"),
                      ("close", "a"), ("close", "b")]


@pytest.mark.slow  # four epochs under two CPU hogs: CI runs it with the slow tests
@pytest.mark.alone  # the hogs must be the only load: another test beside it would be one more
def test_a_cpu_hog_started_mid_training_flags_the_run_and_names_the_epochs(tmp_path, tiny_dir, monkeypatch):
    """Competing load that starts after the quiet second and the first epoch is seen in the per-block
    reading of /proc/stat, not in the reading before training: the run is flagged, naming loaded epochs,
    and the verdict line says the run was flagged."""
    from twincnn.compare import workers

    name = frameworks(1)[0]
    hogs, blocks_run = [], []
    train_block = workers.Worker.train_block

    def start_hogs_after_epoch_1(self):
        if len(blocks_run) == 2:  # both workers' epoch 1 is over: load arrives mid-training
            hogs.extend(cpu_hogs())
        blocks_run.append(self.label)
        return train_block(self)

    monkeypatch.setattr(workers.Worker, "train_block", start_hogs_after_epoch_1)
    try:
        rc, out = compare(tmp_path, "--frameworks", f"{name},{name}", "--data", str(tiny_dir), "--epochs", "4",
                          "--repeats", "1", "--block-steps", "0")
    finally:
        stop_all(hogs)
    assert rc == 0 and hogs
    doc = json.loads((out / "results.json").read_text())
    (flag,) = [f for f in doc["noise"]["flags"] if f.startswith("other processes took")]
    assert "epoch 1 " not in flag and "repeat 1 epoch" in flag, flag
    assert "[on a run flagged as noisy" in (out / "report.md").read_text()
    assert not any(f.startswith("other work used") for f in doc["noise"]["flags"])  # not visible before training


@pytest.mark.slow
@pytest.mark.alone  # the bursty load must be the only load
def test_quick_names_a_1_5x_faster_twin_under_bursty_load(tmp_path, monkeypatch):
    """Under bursty competing load (every CPU busy 0.2 s, idle 0.3 s), `--quick` at the default repeats
    still names the faster of two workers whose steps differ by 1.5× (the same framework, one of them
    slowed by a busy wait per step: tests/slowed_worker.py)."""
    from twincnn.compare import workers

    name = frameworks(1)[0]
    monkeypatch.setattr(workers, "WORKER_COMMAND", [sys.executable, str(Path(__file__).with_name("slowed_worker.py"))])
    hogs = cpu_hogs(busy=0.2, idle=0.3)
    try:
        rc, out = compare(tmp_path, "--frameworks", f"{name},{name}", "--quick")
    finally:
        stop_all(hogs)
    assert rc == 0
    (verdict,) = json.loads((out / "results.json").read_text())["verdicts"]
    assert verdict["outcome"] == "faster" and verdict["text"].startswith(f"{name} 1."), verdict["text"]


def test_other_cpu_share_is_the_non_idle_time_of_the_run_s_cpus_not_its_own():
    hz = os.sysconf("SC_CLK_TCK")
    before = {"mask_jiffies": 0, "mask_idle_jiffies": 0}
    after = {"mask_jiffies": 4 * hz, "mask_idle_jiffies": hz}  # 4 CPU-seconds, 1 of them idle
    assert machine.other_cpu_share(before, after, own_cpu_seconds=2.0) == pytest.approx(0.25)
    assert machine.other_cpu_share(before, after, own_cpu_seconds=3.5) == 0.0  # jiffies are coarse: never < 0
    assert machine.other_cpu_share({}, after, 1.0) is None and machine.other_cpu_share(before, before, 0.0) is None
    reading = machine.load_reading()
    if "cpu_jiffies" in reading:  # Linux: the mask's CPUs are a part of all of them
        assert 0 < reading["mask_jiffies"] <= reading["cpu_jiffies"]


def test_a_trainer_that_skips_a_block_boundary_is_a_bug_said_plainly():
    """A trainer that calls its step hook once per epoch (a whole-epoch scan) cannot be cut into blocks:
    the worker stops with the reason instead of answering the parent's schedule out of step."""
    from twincnn.compare.worker import EpochClock

    class Channel:
        def wait_for_go(self):
            return 0.0

        def send(self, event, **fields):
            pass

    class Trainer:
        def sync(self):
            pass

    job = {"label": "scan", "epochs": 1, "progress": False, "block_steps": 5, "device": "cpu", "steps_per_epoch": 10}
    clock = EpochClock(Channel(), Trainer(), job, None, None)
    clock.epoch_start(1)
    clock.step(10)  # the whole epoch at once: the boundary at step 5 never came
    with pytest.raises(RuntimeError, match="reported 0 of 1 block boundaries"):
        clock.epoch_end(1, 0.5)


@pytest.mark.parametrize("args", [["--protocol", "notebook"], ["--device", "cuda"]])
def test_blocks_are_refused_where_whole_epochs_are_timed(tmp_path, capsys, args):
    rc, out = compare(tmp_path, "--frameworks", frameworks(1)[0], "--block-steps", "50", *args)
    assert rc == 2 and not out.exists()
    assert "--block-steps applies to the fair protocol on the CPU" in capsys.readouterr().err
