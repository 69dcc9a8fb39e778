"""pytest-benchmark suite: both frameworks side by side per task, idiomatic and tuned code.

    pytest tests/benchmarks --benchmark-only          # time them
    tox -e bench                                      # and compare with the committed baseline

Every benchmarked call checks its own result (finite loss, logits of the right shape), warm-up runs
before the clock starts, and extra_info records versions, threads and the CPU model.
"""

import math
import os
import time

import numpy as np
import pytest

from tests.helpers import require
from twincnn import backends
from twincnn.backends import BACKENDS
from twincnn.machine import cpu_model
from twincnn.errors import UserError
from twincnn.progress import Progress
from twincnn.spec import DEFAULT_SPEC
from twincnn.weights import initial_weights

VARIANTS = ["idiomatic", "tuned"]
# TWINCNN_BENCH_DEVICE=cuda runs the same suite on a GPU (frameworks without one are skipped).
DEVICE = os.environ.get("TWINCNN_BENCH_DEVICE", "cpu")
BATCH = 64
CASES = [(f, v) for f in list(BACKENDS) for v in VARIANTS]
IDS = [f"{f}-{v}" for f, v in CASES]


@pytest.fixture(scope="module")
def train_data():
    from twincnn import data

    ds = data.load()
    return ds.images("train"), ds.labels("train"), ds.images("test")


def _backend(name):
    if not backends.runs_here(name):  # a timing across a process boundary would time the boundary
        entry = backends.BACKENDS[name]
        pytest.skip(f"{name} runs in a process of its own here ({entry.process_setting[0]} reads "
                    f"{entry.process_setting[1]} once per process); time it in one of its own: "
                    f"{entry.process_setting[1]}={entry.process_setting[2]} pytest --benchmark-only -k {name}")
    backend = require(name)
    try:
        backend.resolve_device(DEVICE)
    except UserError as exc:  # e.g. tensorflow-cpu asked for cuda; anything else is a failure, not a skip
        pytest.skip(str(exc))
    return backend, backend.configure(os.cpu_count())


def _trainer(name, variant, x, y):
    backend, threads = _backend(name)
    model = backend.build(DEFAULT_SPEC, seed=0, device=DEVICE)
    backend.set_weights(model, DEFAULT_SPEC, initial_weights(DEFAULT_SPEC, 0))
    trainer = backend.make_trainer(model, DEFAULT_SPEC, variant=variant, device=DEVICE)
    trainer.set_data(x, y)
    return backend, trainer, threads


def _info(benchmark, allocator, backend, variant, threads):
    benchmark.extra_info.update(framework=backend.NAME, version=backend.version(), variant=variant,
                                device=DEVICE, cpu=cpu_model(), cores=os.cpu_count(),
                                allocator=allocator, **threads)


@pytest.mark.parametrize("name,variant", CASES, ids=IDS)
def test_train_step(benchmark, allocator, train_data, name, variant):
    """One training step at batch 64: forward, backward, Adam."""
    x, y, _ = train_data
    backend, trainer, threads = _trainer(name, variant, x, y)
    batches = np.random.default_rng(0).permutation(len(x))[: 200 * BATCH].reshape(200, BATCH)
    for idx in batches[:10]:  # warm-up: graph tracing, thread pools, allocator
        trainer.step(idx)
    counter = iter(range(10**9))

    def step():
        return float(trainer.step(batches[next(counter) % len(batches)]))

    benchmark.group = f"train step, batch {BATCH} ({variant})"
    _info(benchmark, allocator, backend, variant, threads)
    loss = benchmark(step)
    assert math.isfinite(loss) and 0 < loss < 10


@pytest.mark.parametrize("batch", [64, 1000])
@pytest.mark.parametrize("name,variant", CASES, ids=IDS)
def test_inference(benchmark, allocator, train_data, name, variant, batch):
    _, _, x_test = train_data
    backend, threads = _backend(name)
    predict = backend.make_predictor(backend.build(DEFAULT_SPEC, seed=0, device=DEVICE), variant)
    x = x_test[:batch]
    for _ in range(3):
        predict(x)
    benchmark.group = f"inference, batch {batch} ({variant})"
    _info(benchmark, allocator, backend, variant, threads)
    logits = benchmark(predict, x)
    assert logits.shape == (batch, 10) and np.isfinite(logits).all()


@pytest.mark.parametrize("name,variant", CASES, ids=IDS)
def test_epoch(benchmark, allocator, train_data, name, variant):
    """One full epoch (60,000 images, 938 steps) in pedantic mode: few rounds, warm-up excluded.
    Untimed (--benchmark-disable, as CI runs it) it checks the same code on 40 steps instead of 938."""
    x, y, _ = train_data
    backend, trainer, threads = _trainer(name, variant, x, y)
    rng = np.random.default_rng(0)
    trainer.train_epoch(rng.permutation(len(x))[: 20 * BATCH], BATCH)  # warm-up, untimed
    rows = 40 * BATCH if benchmark.disabled else len(x)

    def epoch():
        loss = trainer.train_epoch(rng.permutation(len(x))[:rows], BATCH)
        trainer.sync()
        return loss

    benchmark.group = f"epoch, 60,000 images ({variant})"
    _info(benchmark, allocator, backend, variant, threads)
    loss = benchmark.pedantic(epoch, rounds=2, iterations=1)
    assert math.isfinite(loss) and loss < 1.0  # 60 steps of MNIST must have learned something


@pytest.mark.parametrize("harness", ["bare", "harness"])
@pytest.mark.parametrize("name", list(BACKENDS))
def test_harness_overhead(benchmark, allocator, train_data, name, harness):
    """compare's per-step timing and progress bar vs a bare loop (goal: under 2 %), 200 steps.
    Untimed (--benchmark-disable) it checks the same code on 20 steps."""
    x, y, _ = train_data
    backend, trainer, threads = _trainer(name, "tuned", x, y)
    steps = 20 if benchmark.disabled else 200
    order = np.random.default_rng(1).permutation(len(x))[: steps * BATCH]
    trainer.train_epoch(order[: 10 * BATCH], BATCH)
    times = []

    def on_step(done, bar=Progress("bench", steps, enabled=False), clock=[time.perf_counter()]):
        now = time.perf_counter()
        times.append(now - clock[0])
        clock[0] = now
        bar.update(done)

    def run():
        return trainer.train_epoch(order, BATCH, on_step if harness == "harness" else None)

    benchmark.group = f"harness overhead, 200 steps ({name})"
    _info(benchmark, allocator, backend, "tuned", threads)
    loss = benchmark.pedantic(run, rounds=5, iterations=1)
    assert math.isfinite(loss)
