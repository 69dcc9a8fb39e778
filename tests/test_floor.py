"""The hardware floor: training FLOPs from the spec, the matmul rate at the training's thread count."""

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


def test_measure_floor_divides_flops_by_the_rate(monkeypatch):
    monkeypatch.setattr(floor, "matmul_gflops", lambda threads=None: 100.0)
    result = floor.measure_floor(DEFAULT_SPEC, 1000, 2, threads=3)
    assert result["matmul_gflops"] == 100.0 and result["threads"] == 3
    assert result["train_flops"] == floor.step_flops(DEFAULT_SPEC) * 2000
    assert result["floor_seconds"] == pytest.approx(result["train_flops"] / 100e9)
    assert "3 BLAS thread(s)" in result["method"]
