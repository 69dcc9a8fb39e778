"""Benchmark fixtures: the allocator setting for every timing here, and the kernel lower-bound summary."""

import math

import pytest

from tests.helpers import KERNEL_MINIMA
from twincnn.allocator import keep_freed_memory
from twincnn.floor import measure_floor
from twincnn.spec import DEFAULT_SPEC

IMAGES, EPOCHS, BATCH = 60_000, 5, 64


@pytest.fixture(scope="session", autouse=True)
def allocator() -> str:
    """As `twincnn compare` does, before anything here is timed: timings independent of the heap's history."""
    return keep_freed_memory()


def pytest_terminal_summary(terminalreporter, config):
    minima = config.stash.get(KERNEL_MINIMA, {})
    if not minima:
        return
    floor = measure_floor(DEFAULT_SPEC, IMAGES, EPOCHS)
    steps = EPOCHS * math.ceil(IMAGES / BATCH)
    terminalreporter.section("kernel lower bound (convolutions and max-pools only)")
    terminalreporter.write_line(f"hardware floor for {EPOCHS} epochs: {floor['floor_seconds']:.1f} s "
                                f"({floor['matmul_gflops']:.0f} GFLOP/s)")
    for name, entry in sorted(minima.items()):
        kernels, dispatch = entry["kernels"], entry["dispatch"] or 0.0
        # each kernel timing paid one call's dispatch; a whole step compiled or queued pays it once
        per_step = sum(kernels) - dispatch * max(len(kernels) - 1, 0)
        bound = per_step * steps
        terminalreporter.write_line(
            f"{name}: {len(kernels)} layers forward+backward {sum(kernels) * 1e3:.2f} ms, dispatch "
            f"{dispatch * 1e6:.0f} us -> {per_step * 1e3:.2f} ms per step, {bound:.1f} s for {steps} steps "
            f"= {bound / floor['floor_seconds']:.2f}x floor")
