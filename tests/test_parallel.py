"""Data-parallel twins: R ranks on each framework's own distributed engine train exactly as one process does
on the global batch, every rank holds the same weights, and the data-parallel twins of different frameworks
agree as their single-process twins do. A rank that dies ends the whole run, leaving no process behind."""

import dataclasses
import json
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import assert_trained_alike, require
from twincnn import backends
from twincnn.backends.interface import KERAS_ADAM_EPSILON
from twincnn.errors import UserError
from twincnn.parallel import launch
from twincnn.spec import DEFAULT_SPEC, FLATTEN, Spec, batchnorm, conv, dense, pool
from twincnn.weights import initial_weights, worst_mismatch



PARALLEL = backends.parallel_frameworks()
# each against the reference twin, as conftest's pairs, over the frameworks with a data-parallel twin
PARALLEL_PAIRS = [(PARALLEL[0], other) for other in PARALLEL[1:]]


@pytest.fixture(params=PARALLEL)
def framework(request):
    """Each installed framework with a data-parallel twin (the others are refused: test_compare_ranks)."""
    return require(request.param)


@pytest.fixture(params=PARALLEL_PAIRS, ids=[f"{a}-{b}" for a, b in PARALLEL_PAIRS])
def pair(request):
    return tuple(require(name) for name in request.param)


RANKS, STEPS, GLOBAL_BATCH = 2, 5, 64
# PyTorch's own DDP test compares with one process after 5 steps at atol 1e-5 (rtol 1.3e-6), on a model
# without ReLUs. Here the ranks' all-reduce sums the gradients in another order than one process's batch
# reduction, a few ulps; Adam (a tiny gradient divided by sqrt(v) + eps) and the ReLUs near their kink turn
# that into lr-sized differences within a few steps, as any one-ulp difference does. So the stated tolerance
# is 1e-5 or FLOOR_FACTOR times the floor: one process against itself from kernels one ulp apart, same steps.
PARALLEL_ATOL = 1e-5
FLOOR_FACTOR = 3.0
# A conv net whose BatchNorm sees each rank's slice: per-replica statistics differ from the global batch's.
BN_SPEC = Spec((28, 28, 1), (conv(8), batchnorm(0.9, 1e-3), pool(), FLATTEN, dense(10)))
SPECS = {"cnn": DEFAULT_SPEC, "bn": BN_SPEC}
# Adam's usual step is nearly gradient/|gradient|, blind to the gradient's size. With epsilon far above sqrt(v)
# it is nearly lr·alpha·m/epsilon, in proportion to the gradient: a gradient off by a constant factor shows
# in the weights, and one process's floor drops from ~1e-4 to ~1e-7.
PROPORTIONAL = {"eps": 1.0, "lr": 1.0}
USUAL = {"eps": KERAS_ADAM_EPSILON, "lr": 1e-3}
SCALED_LOSS_RANK = str(Path(__file__).with_name("scaled_loss_rank.py"))


@functools.cache
def problem(which: str):
    """(spec, start weights, images, labels, STEPS global batches of row indices)."""
    from twincnn import data

    spec = SPECS[which]
    ds = data.load().subset(STEPS * GLOBAL_BATCH, 10)
    x, y = ds.images("train"), ds.labels("train")
    batches = np.random.default_rng(1).permutation(len(x))[:STEPS * GLOBAL_BATCH].reshape(STEPS, GLOBAL_BATCH)
    return spec, initial_weights(spec, 0), x, y, batches


@functools.cache
def in_ranks(name: str, which: str, eps: float = USUAL["eps"], lr: float = USUAL["lr"]) -> tuple:
    spec, start, x, y, batches = problem(which)
    return tuple(launch.train_ranks(name, spec, start, x, y, batches, world=RANKS, eps=eps, lr=lr))


@functools.cache
def in_one_process(name: str, which: str, nudged: bool = False, eps: float = USUAL["eps"],
                   lr: float = USUAL["lr"]) -> dict:
    """The same steps as one process on the whole global batch, through the framework's plain trainer (the
    model as built, as the ranks run it); ``nudged``: from kernels one float32 ulp up."""
    spec, start, x, y, batches = problem(which)
    if nudged:
        start = {k: np.nextafter(v, np.float32(np.inf)) if k.endswith("/kernel") else v for k, v in start.items()}
    backend = backends.load(name)
    model = backend.build(spec)
    backend.set_weights(model, spec, start)
    trainer = backend.make_trainer(model, spec, lr=lr, eps=eps, adam="keras", variant="idiomatic")
    trainer.set_data(x, y)
    for batch in batches:
        trainer.step(batch)
    trainer.sync()
    return backend.get_weights(model, spec)


def assert_ranks_identical(ranks, what, keys=None):
    for rank, weights in enumerate(ranks[1:], 1):
        differ = [key for key in keys or weights if not np.array_equal(weights[key], ranks[0][key])]
        assert not differ, f"{what}: rank {rank} differs from rank 0 in {differ} ({worst_mismatch(weights, ranks[0])})"


def tolerance(name: str, which: str, **adam) -> float:
    floor = worst_mismatch(in_one_process(name, which, True, **adam), in_one_process(name, which, **adam)).max_abs
    return max(PARALLEL_ATOL, FLOOR_FACTOR * floor)


def test_ranks_train_as_one_process_on_the_global_batch(framework):
    ranks = in_ranks(framework.NAME, "cnn")
    assert_ranks_identical(ranks, framework.NAME)
    atol = tolerance(framework.NAME, "cnn")
    m = assert_trained_alike(ranks[0], in_one_process(framework.NAME, "cnn"), DEFAULT_SPEC, STEPS,
                             f"{framework.NAME}: {RANKS} ranks against one process after {STEPS} steps", atol=atol)
    print(f"{framework.NAME}: {RANKS} ranks vs one process, {STEPS} steps: {m} (tolerance {atol:.3g})")


@pytest.mark.slow  # a rank launch of its own per framework: CI runs it with the slow tests
def test_ranks_take_the_one_process_step_in_size_as_well_as_direction(framework):
    ranks = in_ranks(framework.NAME, "cnn", **PROPORTIONAL)
    assert_ranks_identical(ranks, framework.NAME)
    atol = tolerance(framework.NAME, "cnn", **PROPORTIONAL)
    m = assert_trained_alike(ranks[0], in_one_process(framework.NAME, "cnn", **PROPORTIONAL), DEFAULT_SPEC, STEPS,
                             f"{framework.NAME}: {RANKS} ranks against one process, Adam's step proportional to the "
                             f"gradient", atol=atol)
    print(f"{framework.NAME}: {RANKS} ranks vs one process, {PROPORTIONAL}: {m} (tolerance {atol:.3g})")


@pytest.mark.slow  # a rank launch of its own per framework: CI runs it with the slow tests
def test_ranks_whose_gradient_is_off_by_a_constant_factor_are_caught(framework, monkeypatch):
    """The comparison above fails for ranks that scale their loss by 1/R once more than their engine needs
    (tests/scaled_loss_rank.py): the gradient's direction is right, its size is half."""
    spec, start, x, y, batches = problem("cnn")
    monkeypatch.setattr(launch, "RANK_COMMAND", [sys.executable, SCALED_LOSS_RANK, framework.NAME])
    faulty = launch.train_ranks(framework.NAME, spec, start, x, y, batches, world=RANKS, **PROPORTIONAL)
    off = worst_mismatch(faulty[0], in_one_process(framework.NAME, "cnn", **PROPORTIONAL))
    atol = tolerance(framework.NAME, "cnn", **PROPORTIONAL)
    print(f"{framework.NAME}: ranks with the loss scaled by 1/{RANKS} once more vs one process: {off}")
    assert off.max_abs > 10 * atol, f"{framework.NAME}: a halved gradient is within {off} of one process (atol {atol:.3g})"


def test_data_parallel_twins_agree_as_single_process_ones_do(pair):
    """Across frameworks the difference after STEPS steps is training's own (rounding through Adam); data
    parallelism may not add to it beyond the tolerance one rank-vs-process comparison allows."""
    a, b = pair
    apart = worst_mismatch(in_ranks(a.NAME, "cnn")[0], in_ranks(b.NAME, "cnn")[0]).max_abs
    alone = worst_mismatch(in_one_process(a.NAME, "cnn"), in_one_process(b.NAME, "cnn")).max_abs
    print(f"{a.NAME} vs {b.NAME} after {STEPS} steps: data-parallel {apart:.3g}, one process each {alone:.3g}")
    assert apart <= alone + 2 * PARALLEL_ATOL, (
        f"{a.NAME} vs {b.NAME}: data-parallel twins differ by {apart:.3g}, single-process ones by {alone:.3g}")


def test_batchnorm_statistics_are_global_exactly_where_the_engine_synchronises_them(framework):
    """With synchronised BatchNorm R ranks are one process; without it each rank normalises with its own
    slice's statistics, which is another function of the batch, and its own moving statistics (rank 0's are
    the ones kept): the difference shows after one step."""
    parallel = backends.load_parallel(framework.NAME)
    ranks, one = in_ranks(framework.NAME, "bn"), in_one_process(framework.NAME, "bn")
    assert_ranks_identical(ranks, framework.NAME,
                           None if parallel.SYNCHRONIZED_BATCHNORM else list(BN_SPEC.trainable_weight_shapes()))
    apart = worst_mismatch(ranks[0], one)
    print(f"{framework.NAME}: BatchNorm {'synchronised' if parallel.SYNCHRONIZED_BATCHNORM else 'per rank'}, "
          f"{RANKS} ranks vs one process after {STEPS} steps: {apart}")
    if parallel.SYNCHRONIZED_BATCHNORM:
        assert_trained_alike(ranks[0], one, BN_SPEC, STEPS, f"{framework.NAME}, synchronised BatchNorm",
                             atol=tolerance(framework.NAME, "bn"))
    else:
        assert apart.max_abs > 10 * tolerance(framework.NAME, "bn"), f"{framework.NAME}: per-rank statistics yet {apart}"


def test_a_killed_rank_ends_the_run_with_one_line_and_no_process_left(framework):
    spec, start, x, y, batches = problem("cnn")
    started = []

    def kill_rank_one(processes):
        started.extend(processes)
        processes[1].send_signal(signal.SIGKILL)

    with pytest.raises(UserError) as caught:
        launch.train_ranks(framework.NAME, spec, start, x, y, np.tile(batches, (40, 1)), world=RANKS,
                           on_start=kill_rank_one)
    message = str(caught.value)
    assert message.startswith(f"rank 1 of the {backends.BACKENDS[framework.NAME].label} run was killed by "
                              "SIGKILL; the other ranks were stopped") and "\n" not in message, message
    assert all(process.poll() is not None for process in started)


def test_a_run_past_its_timeout_is_stopped_naming_the_ranks(framework):
    spec, start, x, y, batches = problem("cnn")
    with pytest.raises(UserError, match=r"did not finish within 1 s \(ranks \[0, 1\] still running"):
        launch.train_ranks(framework.NAME, spec, start, x, y, np.tile(batches, (400, 1)), world=RANKS, timeout=1)


RUN_AND_REPORT = """
import sys, time, numpy as np
from twincnn.parallel import launch
from twincnn.spec import DEFAULT_SPEC
from twincnn.weights import initial_weights
x = np.zeros((64, 28, 28, 1), np.float32); y = np.zeros(64, np.int64)
def report(processes):
    print(" ".join(str(p.pid) for p in processes), flush=True)
launch.train_ranks(sys.argv[1], DEFAULT_SPEC, initial_weights(DEFAULT_SPEC, 0), x, y,
                   np.tile(np.arange(64), (100000, 1)), world=2, on_start=report)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_ranks_end_when_the_launching_process_is_killed(framework, tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", RUN_AND_REPORT, framework.NAME], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == RANKS, "the launcher reported no ranks"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while any(map(_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, pids)), f"ranks {[pid for pid in pids if _alive(pid)]} outlived their launcher"
        left = list(tmp_path.glob("twincnn-ranks-*"))
        assert not left, f"the killed launcher's job folder {left} was left behind"
    finally:
        for pid in pids if "pids" in locals() else []:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_global_batch_the_ranks_cannot_share_equally_is_refused(framework):
    spec, start, x, y, batches = problem("cnn")
    with pytest.raises(UserError, match="^a global batch of 63 cannot be split evenly over 2 ranks; use a batch "
                                        "size that is a multiple of 2$"):
        launch.train_ranks(framework.NAME, spec, start, x, y, batches[:, :63], world=2)


def test_each_rank_gets_its_own_operating_system_port():
    ports = launch.free_ports(4)
    assert len(set(ports)) == 4 and all(port > 0 for port in ports)
    environment = launch.rank_environment(1, ports)
    assert (environment["RANK"], environment["WORLD_SIZE"], environment["MASTER_PORT"]) == ("1", "4", str(ports[0]))
    assert environment["TWINCNN_RANK_PORTS"] == ",".join(map(str, ports))


def test_a_framework_without_a_data_parallel_twin_is_refused_in_one_line(monkeypatch):
    name = next(iter(backends.BACKENDS))
    entry = backends.BACKENDS[name]
    monkeypatch.setitem(backends.BACKENDS, name, dataclasses.replace(entry, parallel=None))
    with pytest.raises(UserError, match=f"^{entry.label} has no data-parallel twin yet; frameworks that have one: "):
        launch.train_ranks(name, DEFAULT_SPEC, {}, None, None, np.zeros((1, 2)), world=2)


def _free_port() -> int:
    return launch.free_ports(1)[0]


def _torchrun(args, environment):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(RANKS),
               "-m", "twincnn.parallel.rank", *args]
    return [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]


def _one_process_per_node_with_tf_config(args, environment):
    workers = [f"127.0.0.1:{port}" for port in launch.free_ports(RANKS)]
    return [subprocess.Popen([sys.executable, "-m", "twincnn.parallel.rank", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             env={**environment, "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                                          "task": {"type": "worker", "index": rank}})})
            for rank in range(RANKS)]


JAX_SLURM_PORTS = 2 ** 12  # JAX's coordinator under SLURM: port 65536 - 4096 + SLURM_JOB_ID % 4096


def _job_id_whose_jax_port_is_free() -> int:
    for job_id in np.random.default_rng().permutation(JAX_SLURM_PORTS):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", 65536 - JAX_SLURM_PORTS + int(job_id)))
            except OSError:
                continue
        return int(job_id)
    raise RuntimeError("no free port among those JAX's SLURM coordinator uses")


def _srun(args, environment, name):
    """`srun --nodes 1 --ntasks-per-node RANKS`: every task with the variables SLURM gives it (this machine as
    the node "localhost"); PyTorch's ranks also with the recipe's mapping of them to torchrun's."""
    job_id, port = _job_id_whose_jax_port_is_free(), _free_port()
    processes = []
    for rank in range(RANKS):
        slurm = {"SLURM_JOB_ID": str(job_id), "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
                 "SLURM_NODEID": "0", "SLURM_NTASKS": str(RANKS), "SLURM_STEP_NUM_TASKS": str(RANKS),
                 "SLURM_STEP_NUM_NODES": "1", "SLURM_JOB_NODELIST": "localhost", "SLURM_STEP_NODELIST": "localhost",
                 "SLURM_STEP_TASKS_PER_NODE": str(RANKS)}
        if name == "torch":  # the recipe: RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS MASTER_ADDR=<first host>
            slurm.update(RANK=str(rank), WORLD_SIZE=str(RANKS), MASTER_ADDR="localhost", MASTER_PORT=str(port))
        processes.append(subprocess.Popen([sys.executable, "-m", "twincnn.parallel.rank", *args],
                                          env={**environment, **slurm}, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    return processes


# docs/parallel.md's recipes, run on this machine: how each framework's users start ranks on a cluster
RECIPES = {
    "torch": _torchrun,
    "jax": lambda args, env: require("torch") and _torchrun(args, {**env, "JAX_COORDINATOR_ADDRESS":
                                                                     f"127.0.0.1:{_free_port()}"}),
    "tensorflow": _one_process_per_node_with_tf_config,
}
STEPS_UNDER_LAUNCHERS, SEED_UNDER_LAUNCHERS = 3, 4


@functools.cache
def in_own_ranks(name: str) -> dict:
    """Rank 0's weights after the launcher tests' steps, in twincnn's own ranks."""
    from twincnn import data

    ds = data.load()
    x, y = ds.images("train"), ds.labels("train")
    steps, seed = STEPS_UNDER_LAUNCHERS, SEED_UNDER_LAUNCHERS
    batches = np.random.default_rng(seed).permutation(len(x))[:steps * 64].reshape(steps, 64)
    return launch.train_ranks(name, DEFAULT_SPEC, initial_weights(DEFAULT_SPEC, seed), x, y, batches, world=RANKS)[0]


@pytest.mark.slow  # a minute per framework: CI runs it with the slow tests
@pytest.mark.parametrize("launcher", ["own", "srun"])
def test_ranks_under_the_launchers_people_use_train_what_twincnn_s_ranks_train(framework, launcher, tmp_path):
    """`python -m twincnn.parallel.rank` under the framework's own launcher (torchrun, a TF_CONFIG per process)
    or under SLURM's srun writes every rank's weights and rank 0's summary, and the weights are exactly those
    of the same steps in twincnn's own ranks."""
    if launcher == "own" and framework.NAME not in RECIPES:
        pytest.skip(f"no launcher recipe for {framework.NAME} in docs/parallel.md yet")
    start = RECIPES[framework.NAME] if launcher == "own" else functools.partial(_srun, name=framework.NAME)
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TF_CONFIG")
                   and not k.startswith("SLURM_")}
    environment["TMPDIR"] = str(tmp_path)  # torchrun leaves its own folders there
    processes = start(["--framework", framework.NAME, "--steps", str(STEPS_UNDER_LAUNCHERS), "--seed",
                       str(SEED_UNDER_LAUNCHERS), "--threads", "1", "--out", str(tmp_path)], environment)
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes), "\n".join(outputs)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world"] == RANKS and summary["ranks_identical"], summary
    assert summary["engine"] == backends.load_parallel(framework.NAME).ENGINE
    theirs, ours = dict(np.load(tmp_path / "rank0.npz")), in_own_ranks(framework.NAME)
    assert worst_mismatch(theirs, ours).max_abs == 0.0, worst_mismatch(theirs, ours)
