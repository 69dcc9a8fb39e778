"""The hardware floor: training FLOPs from the spec, the matmul rate at the training's thread count."""

from types import SimpleNamespace

import numpy as np
import pytest

from twincnn import floor
from twincnn.spec import DEFAULT_SPEC, Spec, conv, dense


def test_step_flops_count_forward_weight_and_input_gradients_but_not_the_images_gradient():
    # the notebook's CNN: conv1 340,704, conv2 3,902,976, conv3 663,552, fc1 73,728, fc2 1,280 (x2 multiply-add)
    assert DEFAULT_SPEC.layer_flops() == [340_704, 0, 3_902_976, 0, 663_552, 0, 73_728, 1_280]
    assert DEFAULT_SPEC.forward_flops() == 4_982_240
    assert floor.step_flops(DEFAULT_SPEC) == 3 * 4_982_240 - 340_704
    assert floor.training_flops(DEFAULT_SPEC, 60_000, 5) == pytest.approx(14_606_016 * 300_000)


def test_first_weighted_layer_decides_what_is_not_counted():
    spec = Spec((4, 4, 1), ({"type": "flatten"}, dense(8), dense(2)))
    first, second = 2 * 16 * 8, 2 * 8 * 2
    assert spec.layer_flops() == [0, first, second]
    assert floor.step_flops(spec) == 3 * (first + second) - first
    conv_only = Spec((6, 6, 2), (conv(3, 3, activation=None), {"type": "flatten"}, dense(2)))
    assert conv_only.layer_flops()[0] == 2 * 4 * 4 * 3 * 3 * 3 * 2


def test_matmul_runs_with_the_training_thread_count(monkeypatch):
    import threadpoolctl

    seen = []
    real = threadpoolctl.threadpool_limits

    def recording(limits=None, user_api=None):
        seen.append((limits, user_api))
        return real(limits=limits, user_api=user_api)

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", recording)
    rate = floor.matmul_gflops(threads=1, n=256, repeats=2)
    assert seen == [(1, "blas")] and rate > 0


class Clock:
    """perf_counter stand-in: each timed product takes the next of ``durations`` seconds."""

    def __init__(self, durations, start=100.0):
        self.readings = []
        now = start
        for d in durations:
            self.readings += [now, now + d]
            now += d + 7.0
        self.calls = 0

    def perf_counter(self):
        self.calls += 1
        return self.readings[self.calls - 1]


def fake_operands(monkeypatch):
    """Small stand-in operands; records the shape and dtype the measurement asked for."""
    asked = []

    class Generator:
        def random(self, shape, dtype):
            asked.append((shape, dtype))
            return np.ones((2, 2), dtype)

    monkeypatch.setattr(floor.np.random, "default_rng", lambda seed: Generator())
    return asked


def test_matmul_rate_is_the_gemm_flops_over_the_fastest_repeat(monkeypatch):
    asked = fake_operands(monkeypatch)
    clock = Clock([3.0, 2.0, 4.0])
    monkeypatch.setattr(floor, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    rate = floor.matmul_gflops(threads=1, n=1000, repeats=3)
    assert rate == pytest.approx(2 * 1000 ** 3 / 2.0 / 1e9, rel=1e-12)
    assert asked == [((1000, 1000), np.float32)] * 2 and clock.calls == 6


def test_the_default_measurement_is_the_one_the_results_describe(monkeypatch):
    asked = fake_operands(monkeypatch)
    clock = Clock([0.5] * 5)
    monkeypatch.setattr(floor, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    result = floor.measure_floor(DEFAULT_SPEC, 10, 1)
    assert result["method"] == "numpy float32 matmul 2048x2048, best of 5, all BLAS thread(s)"
    assert asked == [((2048, 2048), np.float32)] * 2 and clock.calls == 2 * 5
    assert result["matmul_gflops"] == pytest.approx(2 * 2048 ** 3 / 0.5 / 1e9, rel=1e-12)
    assert result["threads"] is None


def test_measure_floor_divides_flops_by_the_rate(monkeypatch):
    asked_threads = []

    def rate(threads=None):
        asked_threads.append(threads)
        return 100.0

    monkeypatch.setattr(floor, "matmul_gflops", rate)
    result = floor.measure_floor(DEFAULT_SPEC, 1000, 2, threads=3)
    assert asked_threads == [3]  # the floor is measured with the training's thread count
    assert result["matmul_gflops"] == 100.0 and result["threads"] == 3
    assert result["train_flops"] == floor.step_flops(DEFAULT_SPEC) * 2000
    assert result["floor_seconds"] == pytest.approx(result["train_flops"] / 100e9, rel=1e-12)
    assert result["method"] == "numpy float32 matmul 2048x2048, best of 5, 3 BLAS thread(s)"
