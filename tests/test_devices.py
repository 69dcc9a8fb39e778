"""Device paths. The CUDA tests run where a GPU is present and skip cleanly elsewhere;
the capturable optimizer and the error paths are checked on every machine."""

import numpy as np
import pytest

from tests.helpers import STEP_ATOL, assert_close
from twincnn.cli import main
from twincnn.weights import initial_weights

pytestmark = pytest.mark.torch  # every test here needs PyTorch (collection cannot see require() calls)


def _has_cuda():
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


cuda = pytest.mark.skipif(not _has_cuda(), reason="no CUDA GPU visible to PyTorch")


def test_capturable_keras_adam_matches_plain(spec):
    """The device-side step count (needed inside a CUDA graph) gives the same update as the host-side one.

    Two steps (so the bias correction changes with t); later steps on one repeated batch can hit a
    rounding-amplifying event (a weight whose gradient is near eps) that says nothing about the formula."""
    from tests.helpers import require

    tb = require("torch")
    import torch

    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    y = np.arange(64) % 10
    results = []
    for capturable in (False, True):
        model = tb.build(spec, seed=0)
        tb.set_weights(model, spec, initial_weights(spec, 0))
        opt = tb.make_optimizer(model, 1e-3, "keras", capturable=capturable)
        for _ in range(2):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(tb.to_input(x)), torch.as_tensor(y)).backward()
            opt.step()
        results.append(tb.get_weights(model, spec))
    assert_close(results[1], results[0], STEP_ATOL, "capturable vs plain Keras-Adam after 2 steps")


@pytest.mark.parametrize("steps_before", [0, 3], ids=["first capture", "capture mid-training"])
def test_steps_inside_training_state_kept_leave_no_trace(spec, steps_before):
    """What a CUDA graph capture does to training, checked on the CPU: the warm-up steps around a capture
    (for the last, partial batch, in the middle of the first epoch) must not restart or advance Adam."""
    from tests.helpers import require

    tb = require("torch")
    import torch

    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = np.arange(64) % 10

    def step(model, opt, rows):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(tb.to_input(x[rows])), torch.as_tensor(y[rows])).backward()
        opt.step()

    weights = []
    for warm_up in (False, True):
        model = tb.build(spec, seed=0)
        tb.set_weights(model, spec, initial_weights(spec, 0))
        opt = tb.make_optimizer(model, 1e-3, "keras")
        for _ in range(steps_before):
            step(model, opt, slice(0, 64))
        if warm_up:
            tensors = {id(v) for state in opt.state.values() for v in state.values() if torch.is_tensor(v)}
            with tb.training_state_kept(model, opt):
                for _ in range(3):
                    step(model, opt, slice(0, 32))
            kept = {id(v) for state in opt.state.values() for v in state.values() if torch.is_tensor(v)}
            assert tensors <= kept  # restored in place: a captured graph still points at them
        for _ in range(2):
            step(model, opt, slice(32, 64))
        weights.append(tb.get_weights(model, spec))
    assert_close(weights[1], weights[0], 0.0, f"{steps_before} steps, warm-up kept out, 2 more steps")


def test_cuda_without_gpu_is_one_clear_line(tmp_path, capsys):
    if _has_cuda():
        pytest.skip("a GPU is present")
    from tests.helpers import require

    require("torch")
    rc = main(["compare", "--frameworks", "torch", "--device", "cuda", "--quick", "--no-floor",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "sees no CUDA GPU" in err and len(err.strip().splitlines()) == 1


@cuda
@pytest.mark.gpu
def test_cuda_graph_step_matches_eager(spec):
    """The tuned CUDA path (whole step in a CUDA graph) trains exactly like the eager CPU twin."""
    from tests.helpers import require

    tb = require("torch")
    from twincnn import data

    ds = data.load()
    x, y = ds.images("train")[:3200], ds.labels("train")[:3200]
    weights = {}
    for device, variant in (("cpu", "idiomatic"), ("cuda", "tuned")):
        model = tb.build(spec, seed=0)
        tb.set_weights(model, spec, initial_weights(spec, 0))
        trainer = tb.make_trainer(model, spec, variant=variant, device=device)
        assert trainer.use_graph == (device == "cuda")
        trainer.set_data(x, y)
        for i in range(2):
            trainer.step(np.arange(i * 64, (i + 1) * 64))
        trainer.sync()
        weights[device] = tb.get_weights(trainer.model, spec)
    assert_close(weights["cuda"], weights["cpu"], 10 * STEP_ATOL, "CUDA graph vs CPU eager after 2 steps")


@cuda
@pytest.mark.gpu
def test_compare_on_cuda(tmp_path):
    import json

    rc = main(["compare", "--frameworks", "torch", "--device", "cuda", "--quick", "--no-progress",
               "--out", str(tmp_path / "o")])
    assert rc == 0
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["frameworks"]["torch"]["test_accuracy"] > 0.9


@cuda
@pytest.mark.gpu
def test_cuda_logits_match_the_numpy_reference(spec):
    from tests.helpers import require
    from tests.helpers import assert_gpu_logits_match_reference

    assert_gpu_logits_match_reference(require("torch"), spec, "PyTorch on the GPU vs NumPy")
