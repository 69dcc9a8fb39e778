"""The hardware floor: this machine's float32 matrix-multiply rate and the CNN's training FLOPs."""

from __future__ import annotations

import time

import numpy as np

from .spec import Spec

TRAIN_STEP_FACTOR = 3  # forward + backward (gradients w.r.t. inputs and weights) ~ 3x the forward FLOPs


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best observed float32 GEMM rate (NumPy's BLAS, all its threads), in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start and page faults stay out of the timing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def training_flops(spec: Spec, images: int, epochs: int) -> float:
    return float(TRAIN_STEP_FACTOR * spec.forward_flops() * images * epochs)


def measure_floor(spec: Spec, images: int, epochs: int) -> dict:
    gflops = matmul_gflops()
    flops = training_flops(spec, images, epochs)
    return {"matmul_gflops": gflops, "method": "numpy float32 matmul 2048x2048, best of 5",
            "train_flops": flops, "floor_seconds": flops / (gflops * 1e9)}
