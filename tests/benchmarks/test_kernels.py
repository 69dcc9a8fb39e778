"""Each convolution and max-pool of the spec alone, at batch 64, on the CPU, in each framework's tuned layout.

Per layer: forward, and forward+backward through the framework's own autodiff (gradients for the
weights and, except the first layer, the input). The terminal summary adds a framework's forward+backward
medians (less the dispatch of one trivial call for all but one of them) into a lower bound on its
training step: dense layers, ReLU, the loss, Adam and the rest of the framework's overhead only add to it.
It prints that bound for five epochs as a multiple of the hardware floor: how close the tuned step can
get without new kernels.

    pytest tests/benchmarks/test_kernels.py --benchmark-only
"""

import numpy as np
import pytest

from tests.helpers import record_kernel, require
from twincnn.backends import BACKENDS
from twincnn.spec import DEFAULT_SPEC


BATCH = 64
LAYERS = [info for info in DEFAULT_SPEC.info if info.type in ("conv2d", "maxpool2d")]
CASES = [(info, direction) for info in LAYERS for direction in ("forward", "forward+backward")]
IDS = [f"{info.name}-{direction}" for info, direction in CASES]


def _padded(info):
    """Input shape (H, W, C) after the layer's explicit zero padding: the kernels below run unpadded."""
    h, w, c = info.input_shape
    (top, bottom), (left, right) = info.padding or ((0, 0), (0, 0))
    return h + top + bottom, w + left + right, c


def _arrays(info):
    """Input, output gradient, kernel (HWIO) for the layer; NHWC, seeded."""
    rng = np.random.default_rng(0)
    h, w, c = _padded(info)
    oh, ow, oc = info.output_shape
    x = rng.standard_normal((BATCH, h, w, c), dtype=np.float32)
    g = rng.standard_normal((BATCH, oh, ow, oc), dtype=np.float32)
    kernel = None
    if info.type == "conv2d":
        kernel = rng.standard_normal((*info.config["kernel_size"], c, oc), dtype=np.float32) * 0.1
    return x, g, kernel


def torch_kernel(info, direction, first):
    import torch
    import torch.nn.functional as F

    cl = torch.channels_last  # the tuned variant's layout
    x, g, kernel = _arrays(info)
    x, g = (torch.from_numpy(a).permute(0, 3, 1, 2).contiguous(memory_format=cl) for a in (x, g))
    x.requires_grad_(not first)  # the image itself needs no gradient
    if info.type == "conv2d":
        weight = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous(memory_format=cl).requires_grad_()
        bias = torch.zeros(weight.shape[0], requires_grad=True)
        inputs = [weight, bias] + ([x] if not first else [])
        layer = lambda: F.conv2d(x, weight, bias, info.config["strides"])
    else:
        inputs = [x]
        layer = lambda: F.max_pool2d(x, info.config["pool_size"], info.config["strides"])
    if direction == "forward":
        def forward():
            with torch.no_grad():
                return [layer()]
        return forward

    def forward_backward():  # autograd's own backward, as in the training step
        y = layer()
        return [y.detach(), *torch.autograd.grad(y, inputs, g)]

    return forward_backward


def tensorflow_kernel(info, direction, first):
    import tensorflow as tf

    x, g, kernel = _arrays(info)
    x, g = tf.constant(x), tf.constant(g)
    if info.type == "conv2d":
        weight, bias = tf.Variable(kernel), tf.Variable(tf.zeros(kernel.shape[-1]))
        sources = [weight, bias] + ([x] if not first else [])
        layer = lambda: tf.nn.bias_add(tf.nn.conv2d(x, weight, info.config["strides"], "VALID"), bias)
    else:
        sources = [x]
        layer = lambda: tf.nn.max_pool2d(x, info.config["pool_size"], info.config["strides"], "VALID")
    if direction == "forward":
        return tf.function(lambda: [layer()], autograph=False)

    def forward_backward():  # the tape's gradients, as Keras's train step takes them
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer()
        return [y, *tape.gradient(y, sources, output_gradients=g)]  # all returned: none is pruned

    return tf.function(forward_backward, autograph=False)


def jax_kernel(info, direction, first):
    import jax
    import jax.numpy as jnp
    from jax import lax

    x, g, kernel = _arrays(info)
    x, g = jnp.asarray(x), jnp.asarray(g)
    if info.type == "conv2d":  # NHWC input, HWIO kernel: Flax's layouts, as the JAX twin runs them
        params = [jnp.asarray(kernel), jnp.zeros(kernel.shape[-1], jnp.float32)]
        layer = lambda w, b, x: lax.conv_general_dilated(  # noqa: E731
            x, w, info.config["strides"], "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
    else:
        params = []
        window, strides = (1, *info.config["pool_size"], 1), (1, *info.config["strides"], 1)
        layer = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, window, strides, "VALID")  # noqa: E731
    if direction == "forward":
        forward = jax.jit(lambda *args: [layer(*args)])
        return lambda: jax.block_until_ready(forward(*params, x))  # timed until the result exists

    def forward_backward(*args):  # jax.vjp, as jax.grad does inside the training step
        if first:  # the image itself needs no gradient
            y, pullback = jax.vjp(lambda *p: layer(*p, args[-1]), *args[:-1])
        else:
            y, pullback = jax.vjp(layer, *args)
        return [y, *pullback(g)]

    compiled = jax.jit(forward_backward)
    return lambda: jax.block_until_ready(compiled(*params, x))


def torch_dispatch():
    import torch

    one = torch.ones(())
    return lambda: one + 1


def tensorflow_dispatch():
    import tensorflow as tf

    one = tf.constant(1.0)
    return tf.function(lambda: one + 1, autograph=False)


def jax_dispatch():
    import jax
    import jax.numpy as jnp

    one = jnp.ones(())
    add = jax.jit(lambda one: one + 1)
    return lambda: jax.block_until_ready(add(one))


KERNELS = {"torch": torch_kernel, "tensorflow": tensorflow_kernel, "jax": jax_kernel}
DISPATCH = {"torch": torch_dispatch, "tensorflow": tensorflow_dispatch, "jax": jax_dispatch}


def kernels_of(name: str, table: dict):
    """The framework's kernel builder; a registered framework without one is skipped, saying so."""
    if name not in table:
        pytest.skip(f"{name} has no kernel benchmarks: add its builders to KERNELS and DISPATCH in {__name__}")
    return table[name]


@pytest.mark.parametrize("name", list(BACKENDS))
@pytest.mark.parametrize("info,direction", CASES, ids=IDS)
def test_kernel(benchmark, allocator, request, name, info, direction):
    require(name)
    run = kernels_of(name, KERNELS)(info, direction, first=info is LAYERS[0])
    for _ in range(5):  # warm-up: tracing, oneDNN primitive creation
        run()
    benchmark.group = f"kernel: {info.name} {direction}, batch {BATCH}"
    benchmark.extra_info.update(framework=name, layer=info.name, direction=direction, allocator=allocator)
    outputs = [np.asarray(out) for out in benchmark(run)]
    assert outputs[0].shape[0] == BATCH and all(np.isfinite(out).all() for out in outputs)
    if direction != "forward":
        record_kernel(request.config, benchmark, name)


@pytest.mark.parametrize("name", list(BACKENDS))
def test_dispatch(benchmark, allocator, request, name):
    """One trivial call: what each kernel timing above pays once and a whole training step pays once."""
    require(name)
    run = kernels_of(name, DISPATCH)()
    run()
    benchmark.group = "kernel: dispatch of one trivial call"
    benchmark.extra_info.update(framework=name, layer="-", direction="dispatch", allocator=allocator)
    assert float(np.asarray(benchmark(run))) == 2.0
    record_kernel(request.config, benchmark, name, dispatch=True)
