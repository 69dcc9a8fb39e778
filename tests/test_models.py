"""Both builders against the spec's arithmetic: per-layer shapes, parameter counts, output shape and dtype."""

import numpy as np
import pytest

from twincnn.spec import FLATTEN, Spec, conv, dense, pool

OTHER_SPECS = {
    "same-stride2": Spec((28, 28, 1), (conv(6, 3, 2, "same"), conv(5, 2, 1, "same"), pool(3, 2), FLATTEN,
                                       dense(12, "relu"), dense(10))),
    "no-pool-rect-kernel": Spec((28, 28, 1), (conv(4, (5, 3)), FLATTEN, dense(10))),
}


def test_every_layer_matches_spec(framework, model, spec):
    rows = framework.layer_summary(model, spec)
    assert [r[0] for r in rows] == [i.name for i in spec.info]
    for (name, shape, params), info in zip(rows, spec.info):
        assert tuple(shape) == info.output_shape, name
        assert params == info.params, name
    assert sum(r[2] for r in rows) == 90_978


@pytest.mark.parametrize("name", OTHER_SPECS)
def test_other_specs_match(framework, name):
    spec = OTHER_SPECS[name]
    rows = framework.layer_summary(framework.build(spec, seed=0), spec)
    assert [(tuple(s), p) for _, s, p in rows] == [(i.output_shape, i.params) for i in spec.info]


@pytest.mark.parametrize("n", [1, 7, 64])
def test_output_shape_and_dtype(framework, model, n):
    x = np.random.default_rng(n).random((n, 28, 28, 1), dtype=np.float32)
    logits = framework.predict(model, x)
    assert logits.shape == (n, 10)
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()


@pytest.mark.torch
def test_torch_state_dict_loads_into_notebook_class(spec):
    from tests.helpers import require

    tb = require("torch")
    import torch

    from tests.notebook_cnn import CNN

    twin = tb.build(spec, seed=1)
    nb = CNN()
    nb.load_state_dict(twin.state_dict())  # strict: same keys, same shapes
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(nb(x), twin(x))


@pytest.mark.torch
@pytest.mark.equivalence  # numbers against the plain plan: CI runs it again at lower instruction sets
def test_tuned_torch_is_the_same_function(spec):
    """The tuned variant (channels-last, pool before ReLU) must not change a single logit or gradient."""
    from tests.helpers import require

    tb = require("torch")
    from tests.helpers import GRAD_ATOL, LOGIT_ATOL, assert_close

    plain = tb.build(spec, seed=3)
    tuned_trainer = tb.make_trainer(tb.build(spec, seed=4), spec, variant="tuned")
    tb.set_weights(tuned_trainer.model, spec, tb.get_weights(plain, spec))
    assert tuned_trainer.model.plan != plain.plan  # really reordered
    x = np.random.default_rng(0).standard_normal((32, 28, 28, 1)).astype(np.float32)
    y = np.arange(32) % 10
    assert_close(tb.predict(tuned_trainer.model, x), tb.predict(plain, x), LOGIT_ATOL, "tuned vs plain logits")
    _, g_tuned = tb.loss_and_grads(tuned_trainer.model, spec, x, y)
    _, g_plain = tb.loss_and_grads(plain, spec, x, y)
    m = assert_close(g_tuned, g_plain, GRAD_ATOL, "tuned vs plain gradients")
    print(f"PyTorch tuned vs plain plan, gradients: {m}")
