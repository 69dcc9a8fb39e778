"""The hardware floor: this machine's float32 matrix-multiply rate and the CNN's training FLOPs."""

from __future__ import annotations

import math
import time

import numpy as np

from .spec import Spec


def matmul_gflops(threads: int | None = None, n: int = 2048, repeats: int = 5) -> float:
    """Best observed float32 GEMM rate of NumPy's BLAS limited to ``threads`` threads, in GFLOP/s.

    The training runs use ``threads`` threads, so the floor must too: all cores would make it too low.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)  # pragma: no mutate (the operands' values do not change the GEMM's speed)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b  # warm-up: thread pool start and page faults stay out of the timing
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def step_flops(spec: Spec) -> int:
    """FLOPs of one image's training step: forward, the weight gradients, and the input gradients.

    Each weighted layer's backward pass costs its forward twice (once for the weight gradient, once for
    the input gradient), except the first weighted layer: nothing needs the gradient of the images, and
    no framework computes it.
    """
    layers = spec.layer_flops()
    first = next(f for f in layers if f)  # every spec ends with a dense layer, so one has weights
    return 3 * sum(layers) - first


def training_flops(spec: Spec, images: int, epochs: int) -> float:
    return float(step_flops(spec) * images * epochs)


def measure_floor(spec: Spec, images: int, epochs: int, threads: int | None = None) -> dict:
    gflops = matmul_gflops(threads)
    flops = training_flops(spec, images, epochs)
    return {"matmul_gflops": gflops, "threads": threads,
            "method": f"numpy float32 matmul 2048x2048, best of 5, {threads or 'all'} BLAS thread(s)",
            "train_flops": flops, "floor_seconds": flops / (gflops * 1e9)}
