"""`twincnn check` inside the user's own tests: one assertion, the report as its message."""

from __future__ import annotations

from .check import CheckResult, check


def assert_same_function(a, b, *, inputs=None, input_shape: tuple | None = None, atol: float | None = None,
                         gradients: bool = True, adam_step: bool = True, keep_weights: bool = False,
                         data: str | None = None, samples: int = 64) -> CheckResult:
    """Fail with `twincnn check`'s report unless models ``a`` and ``b`` (a Keras model, a PyTorch module) have the
    same architecture and, with a's weights copied into b (or each its own with ``keep_weights``), the same
    logits, gradients, moving statistics and Adam step within the stated tolerances (or one ``atol`` for all).
    ``inputs`` (N, H, W, C) replace MNIST's test images (28x28x1 models, or ``data``) or random ones;
    ``input_shape`` (H, W, C) is the image a PyTorch module takes where the other model does not say;
    ``gradients=False`` compares logits only, ``adam_step=False`` leaves the step out. Returns what check found."""
    result = check(a, b, input_shape=input_shape, keep_weights=keep_weights, data_path=data, samples=samples,
                   inputs=inputs, atol=atol, gradients=gradients, adam_step=adam_step,
                   names=(type(a).__name__, type(b).__name__))
    if not result.same:
        raise AssertionError("the two models are not the same function\n" + result.report)
    return result
