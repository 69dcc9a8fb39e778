"""What each framework does by default where that changes results or timing, read from the installed
framework itself (signatures, initialisers, settings), never typed in. `twincnn audit` shows it.

One reader per registered framework, each importing its framework only when called.
"""

from __future__ import annotations

import inspect
import os

import numpy as np

from .. import backends  # the registry: load() raises FrameworkMissing with the install hint


def _default(obj, name):
    """A parameter's default, read from the installed framework's signature."""
    return inspect.signature(obj).parameters[name].default


def _tf_determinism(tf) -> str:
    from tensorflow.python.framework import config as tf_config  # the public API does not export the getter

    getter = getattr(tf_config, "is_op_determinism_enabled", None)
    return str(getter()) if getter else "unknown"


def _keras_defaults() -> dict:
    backend = backends.load("tensorflow")  # sets up Keras on TensorFlow quietly
    keras, tf = backend.keras, backend.tf
    conv, dense = keras.layers.Conv2D(1, 1), keras.layers.Dense(1)
    adam = keras.optimizers.Adam()
    fit = inspect.signature(keras.Model.fit).parameters
    compile_ = inspect.signature(keras.Model.compile).parameters
    loss = keras.losses.SparseCategoricalCrossentropy()
    threads = tf.config.threading
    return {
        "conv_init": type(conv.kernel_initializer).__name__,
        "dense_init": type(dense.kernel_initializer).__name__,
        "bias_init": type(conv.bias_initializer).__name__,
        "adam_eps": f"{adam.epsilon:g}",
        "adam_betas": f"{adam.beta_1:g}, {adam.beta_2:g}",
        "adam_formula": "w -= lr·√(1-β2ᵗ)/(1-β1ᵗ) · m/(√v + ε)",
        "shuffle": f"fit(shuffle={fit['shuffle'].default})",
        "partial_batch": "kept (fit)",
        "intra": f"{threads.get_intra_op_parallelism_threads()} (0 = all {os.cpu_count()} cores)",
        "inter": f"{threads.get_inter_op_parallelism_threads()} (0 = automatic)",
        "tf32": f"on: tensor_float_32_execution_enabled()={tf.config.experimental.tensor_float_32_execution_enabled()}",
        "determinism": f"op determinism={_tf_determinism(tf)}",
        "fit_epoch": (f"validation pass if validation_data is given; progress bar verbose={fit['verbose'].default!r};"
                      f" compile() metrics computed every step"),
        "graph": f"fit() runs a tf.function; jit_compile={compile_['jit_compile'].default!r}",
        "layout": f"{keras.config.image_data_format()} (NHWC), Flatten in (H, W, C) order",
        "precision": keras.config.floatx(),
        "conv_padding": f"Conv2D(padding={_default(keras.layers.Conv2D, 'padding')!r})",
        "pool_strides": (f"MaxPooling2D(strides={_default(keras.layers.MaxPooling2D, 'strides')})"
                         " = pool_size"),
        "loss": f"reduction={loss.reduction!r}",
        "onednn": f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (on)')}",
        **_keras_layer_defaults(keras),
    }


def _keras_layer_defaults(keras) -> dict:
    """The layer defaults behind the zoo's layers: signatures, and what one step of a layer does."""
    bn = keras.layers.BatchNormalization(momentum=0.0)  # momentum 0: the moving variance becomes the batch's
    bn(np.array([[0.0], [2.0]], np.float32), training=True)
    depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)
    depthwise.build((None, 5, 5, 3))
    return {
        "bn_momentum": (f"BatchNormalization(momentum={_default(keras.layers.BatchNormalization, 'momentum'):g}): "
                        f"moving = m·moving + (1-m)·batch"),
        "bn_epsilon": f"BatchNormalization(epsilon={_default(keras.layers.BatchNormalization, 'epsilon'):g})",
        "bn_variance": (f"biased: the moving variance after one batch [0, 2] is "
                        f"{float(bn.moving_variance.numpy()[0]):g}"),
        "avgpool_same": "AveragePooling2D(padding='same'): the real cells (padding not counted)",
        "same_side": "'same' in every layer with strides: the odd padded pixel at the bottom/right",
        "gelu": (f"keras.activations.gelu(approximate={_default(keras.activations.gelu, 'approximate')}), "
                 f"keras.ops.gelu(approximate={_default(keras.ops.gelu, 'approximate')})"),
        "leaky_slope": (f"LeakyReLU layer {_default(keras.layers.LeakyReLU, 'negative_slope'):g}, "
                        f"activations.leaky_relu {_default(keras.activations.leaky_relu, 'negative_slope'):g}"),
        "ln_epsilon": f"LayerNormalization(epsilon={_default(keras.layers.LayerNormalization, 'epsilon'):g})",
        "depthwise_layout": f"DepthwiseConv2D kernel {tuple(depthwise.kernel.shape)} = (kh, kw, in, multiplier)",
    }


def _torch_defaults() -> dict:
    backends.load("torch")
    import torch
    from torch.utils.data import DataLoader

    conv_src = inspect.getsource(torch.nn.Conv2d.reset_parameters) if hasattr(torch.nn.Conv2d, "reset_parameters") \
        else inspect.getsource(torch.nn.modules.conv._ConvNd.reset_parameters)
    dense_src = inspect.getsource(torch.nn.Linear.reset_parameters)

    def init_name(src):
        if "kaiming_uniform_" in src:
            return "kaiming_uniform_(a=√5)" if "math.sqrt(5)" in src else "kaiming_uniform_"
        return "see reset_parameters()"

    adam = inspect.signature(torch.optim.Adam).parameters
    loader = inspect.signature(DataLoader).parameters
    return {
        "conv_init": init_name(conv_src),
        "dense_init": init_name(dense_src),
        "bias_init": "uniform(±1/√fan_in)" if "uniform_(self.bias" in dense_src else "see reset_parameters()",
        "adam_eps": f"{adam['eps'].default:g}",
        "adam_betas": ", ".join(f"{b:g}" for b in adam["betas"].default),
        "adam_formula": "w -= lr · m̂/(√v̂ + ε), m̂ = m/(1-β1ᵗ), v̂ = v/(1-β2ᵗ)",
        "shuffle": f"DataLoader(shuffle={loader['shuffle'].default})" + (" = no shuffling" if not loader["shuffle"].default else ""),
        "partial_batch": f"kept: DataLoader(drop_last={loader['drop_last'].default})",
        "intra": f"{torch.get_num_threads()} (get_num_threads)",
        "inter": f"{torch.get_num_interop_threads()} (get_num_interop_threads)",
        "tf32": (f"matmul allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
                 f"cudnn allow_tf32={torch.backends.cudnn.allow_tf32}"),
        "determinism": f"are_deterministic_algorithms_enabled()={torch.are_deterministic_algorithms_enabled()}",
        "fit_epoch": "nothing: the user's loop does only what it says",
        "graph": "eager (torch.compile is opt-in)",
        "layout": "NCHW (contiguous), flatten in (C, H, W) order",
        "precision": str(torch.get_default_dtype()).replace("torch.", ""),
        "conv_padding": f"Conv2d(padding={_default(torch.nn.Conv2d, 'padding')!r})",
        "pool_strides": f"MaxPool2d(stride={_default(torch.nn.MaxPool2d, 'stride')}) = kernel_size",
        "loss": f"reduction={_default(torch.nn.CrossEntropyLoss, 'reduction')!r}",
        "onednn": f"mkldnn enabled={torch.backends.mkldnn.enabled}",
        **_torch_layer_defaults(torch),
    }


def _torch_layer_defaults(torch) -> dict:
    nn = torch.nn

    bn = nn.BatchNorm1d(1, momentum=1.0)  # momentum 1 in PyTorch's meaning: running_var becomes the batch's
    with torch.no_grad():
        bn.train()(torch.tensor([[0.0], [2.0]]))
    depthwise = nn.Conv2d(3, 6, 3, groups=3)
    return {
        "bn_momentum": (f"BatchNorm2d(momentum={_default(nn.BatchNorm2d, 'momentum'):g}): "
                        f"running = (1-m)·running + m·batch"),
        "bn_epsilon": f"BatchNorm2d(eps={_default(nn.BatchNorm2d, 'eps'):g})",
        "bn_variance": (f"unbiased (x N/(N-1)): running_var after one batch [0, 2] is {bn.running_var.item():g}, "
                        f"while normalising with the biased one"),
        "avgpool_same": (f"AvgPool2d(count_include_pad={_default(nn.AvgPool2d, 'count_include_pad')}): "
                         f"the whole window; no 'same', symmetric padding only"),
        "same_side": ("Conv2d(padding='same'): stride 1 only, odd pixel after; pools: symmetric padding only "
                      "(Keras's extra bottom/right row needs an explicit pad)"),
        "gelu": f"nn.GELU(approximate={_default(nn.GELU, 'approximate')!r})",
        "leaky_slope": f"nn.LeakyReLU({_default(nn.LeakyReLU, 'negative_slope'):g})",
        "ln_epsilon": f"LayerNorm(eps={_default(nn.LayerNorm, 'eps'):g})",
        "depthwise_layout": f"Conv2d(groups=in) weight {tuple(depthwise.weight.shape)} = (in·multiplier, 1, kh, kw)",
    }


def _init_name(init) -> str:
    """Flax initialisers are closures: variance_scaling's settings are its free variables."""
    free = inspect.getclosurevars(init).nonlocals
    if {"scale", "mode", "distribution"} <= set(free):
        known = {(1.0, "fan_in", "truncated_normal"): "lecun_normal", (2.0, "fan_in", "truncated_normal"): "he_normal",
                 (1.0, "fan_avg", "uniform"): "glorot_uniform"}
        key = (free["scale"], free["mode"], free["distribution"])
        return f"{known.get(key, 'variance_scaling')} ({free['scale']:g}, {free['mode']}, {free['distribution']})"
    return getattr(init, "__name__", repr(init))


def _jax_defaults() -> dict:
    backend = backends.load("jax")
    import jax
    import optax
    from flax import nnx

    conv = inspect.signature(nnx.Conv.__init__).parameters
    adam = inspect.signature(optax.adam).parameters
    pool = inspect.signature(nnx.max_pool).parameters
    pool_doc = nnx.max_pool.__doc__ or ""
    threads = backend.configure()
    flags = os.environ.get("XLA_FLAGS", "unset")
    precision = jax.config.jax_default_matmul_precision
    return {
        "conv_init": _init_name(conv["kernel_init"].default),
        "dense_init": _init_name(_default(nnx.Linear.__init__, "kernel_init")),
        "bias_init": _init_name(conv["bias_init"].default),
        "adam_eps": f"{adam['eps'].default:g}",
        "adam_betas": f"{adam['b1'].default:g}, {adam['b2'].default:g}",
        "adam_formula": (f"w -= lr · m̂/(√(v̂ + ε_root) + ε), ε_root={adam['eps_root'].default:g}"
                         if "eps_root" in adam else "w -= lr · m̂/(√v̂ + ε)"),
        "shuffle": "none built in: the loop permutes (jax.random.permutation)",
        "partial_batch": "the loop decides (kept here: a second compiled shape)",
        "intra": f"{threads['intra_op_threads']} ({backend.environment()['threads_set_by']})",
        "inter": "no setting (one XLA program at a time per device)",
        "tf32": f"jax_default_matmul_precision={precision!r}" + (" (GPU: TF32 allowed)" if precision is None else ""),
        "determinism": ("XLA on CPU: deterministic; GPU: xla_gpu_deterministic_ops "
                        + ("on" if "xla_gpu_deterministic_ops=true" in flags else "off")),
        "fit_epoch": "nothing: the user's loop does only what it says",
        "graph": "eager until jit (jax.jit / nnx.jit); the Flax tutorial jits the train step",
        "layout": "NHWC, HWIO kernels; reshape flattens in (H, W, C) order",
        "precision": str(jax.numpy.zeros(()).dtype) + (" (jax_enable_x64 off)" if not jax.config.jax_enable_x64 else ""),
        "loss": "per example (optax); the loop takes .mean()",
        "onednn": f"XLA_FLAGS={flags}",
        "conv_padding": f"nnx.Conv(padding={conv['padding'].default!r})",
        "pool_strides": (f"max_pool(strides={pool['strides'].default}) = "
                         + ("1 (overlapping windows)" if "(1, ..., 1)" in pool_doc else "see max_pool's docstring")),
        **_jax_layer_defaults(jax, nnx),
    }


def _jax_layer_defaults(jax, nnx) -> dict:
    """The layer defaults behind the zoo's layers, read from Flax and jax.nn: signatures, one BatchNorm step."""
    bn = nnx.BatchNorm(1, momentum=0.0, rngs=nnx.Rngs(0))  # momentum 0: the moving variance becomes the batch's
    bn(jax.numpy.array([[0.0], [2.0]]), use_running_average=False)
    depthwise = nnx.Conv(3, 6, (3, 3), feature_group_count=3, rngs=nnx.Rngs(0))
    pads = jax.lax.padtype_to_pads((5, 5), (2, 2), (2, 2), "SAME")  # 5 -> 3 windows of 2: one padded pixel
    include_pad = _default(nnx.avg_pool, "count_include_pad")
    return {
        "bn_momentum": (f"nnx.BatchNorm(momentum={_default(nnx.BatchNorm.__init__, 'momentum'):g}): "
                        f"moving = m·moving + (1-m)·batch"),
        "bn_epsilon": f"nnx.BatchNorm(epsilon={_default(nnx.BatchNorm.__init__, 'epsilon'):g})",
        "bn_variance": (f"biased: the moving variance after one batch [0, 2] is {float(bn.var[...][0]):g}; "
                        f"use_fast_variance={_default(nnx.BatchNorm.__init__, 'use_fast_variance')} (E[x²] - E[x]²)"),
        "avgpool_same": (f"avg_pool(count_include_pad={include_pad}): "
                         + ("the whole window" if include_pad else "the real cells")),
        "same_side": (f"padding='SAME' (lax): 5 -> 3 windows of 2 pad {tuple(pads[0])}: the odd pixel "
                      + ("after (bottom/right)" if pads[0][1] > pads[0][0] else "before (top/left)")),
        "gelu": f"jax.nn.gelu(approximate={_default(jax.nn.gelu, 'approximate')})",
        "leaky_slope": f"jax.nn.leaky_relu(negative_slope={_default(jax.nn.leaky_relu, 'negative_slope'):g})",
        "ln_epsilon": f"nnx.LayerNorm(epsilon={_default(nnx.LayerNorm.__init__, 'epsilon'):g})",
        "depthwise_layout": (f"nnx.Conv(feature_group_count=in) kernel {tuple(depthwise.kernel.shape)} "
                             f"= (kh, kw, 1, in·multiplier)"),
    }


# key, setting, what the notebook used, what twincnn's fair protocol uses
ROWS = [
    ("conv_init", "conv kernel initialiser", "each framework's own", "Glorot-uniform from NumPy (seed), shared"),
    ("dense_init", "dense kernel initialiser", "each framework's own", "Glorot-uniform from NumPy (seed), shared"),
    ("bias_init", "bias initialiser", "each framework's own", "zeros, shared"),
    ("adam_eps", "Adam epsilon", "1e-7 (Keras) vs 1e-8 (PyTorch)", "1e-7 in every twin"),
    ("adam_formula", "Adam update formula", "each framework's own",
     "Keras's, in every twin (KerasAdam in PyTorch, keras_adam in optax)"),
    ("adam_betas", "Adam betas", "defaults", "0.9, 0.999"),
    ("shuffle", "data order / shuffling", "fit(shuffle=True) vs DataLoader(shuffle=True)",
     "one NumPy permutation per epoch, same batches in every twin"),
    ("partial_batch", "last partial batch", "kept in both", "kept in every twin (938 steps/epoch)"),
    ("intra", "intra-op threads", "defaults", "equal, set by --threads, recorded"),
    ("inter", "inter-op threads", "defaults", "1 where settable, recorded"),
    ("tf32", "float precision on GPUs (TF32)", "defaults", "TF32 off for equivalence runs"),
    ("determinism", "deterministic ops", "defaults", "off: on CPU seed 42 reproduces to the digit"),
    ("fit_epoch", "per-epoch extras", "TF timed with validation each epoch + Keras bar + accuracy metric",
     "no validation or metrics in timed training; one progress bar for every twin"),
    ("graph", "graph compilation", "fit() graph vs eager loop", "--variant: idiomatic or tuned, same for all"),
    ("layout", "tensor layout", "NHWC vs NCHW", "canonical weights convert; inputs stay NHWC in NumPy"),
    ("precision", "float precision", "float32", "float32"),
    ("loss", "loss reduction", "mean over batch", "mean over batch"),
    ("onednn", "oneDNN (CPU kernels)", "defaults", "defaults, recorded"),
    ("conv_padding", "default conv padding", "'valid' (Keras default) and padding=0", "from the spec, explicit in every twin"),
    ("pool_strides", "default max-pool strides", "pool size (both)", "from the spec, explicit in every twin"),
    # the zoo's layers (the notebook's CNN has none of them)
    ("bn_momentum", "BatchNorm momentum (meaning, value)", "n/a",
     "the spec's, in Keras's meaning, in every twin (PyTorch: KerasBatchNorm)"),
    ("bn_epsilon", "BatchNorm epsilon", "n/a", "the spec's (default 1e-3), explicit in every twin"),
    ("bn_variance", "BatchNorm moving variance", "n/a", "biased, as Keras, in every twin"),
    ("avgpool_same", "average-pool 'same' divisor", "n/a", "the real cells (Keras), in every twin"),
    ("same_side", "'same' padding: the odd pixel", "bottom/right (Keras); the notebook's PyTorch had no 'same'",
     "bottom/right, explicit padding in every twin"),
    ("gelu", "GELU default approximation", "n/a", "gelu = exact (erf), gelu_tanh = tanh; explicit in every twin"),
    ("leaky_slope", "LeakyReLU negative slope", "n/a", "the spec's (default 0.3, Keras's layer), explicit"),
    ("ln_epsilon", "LayerNorm epsilon", "n/a", "the spec's (default 1e-3), explicit in every twin"),
    ("depthwise_layout", "depthwise kernel layout", "n/a",
     "canonical (kh, kw, in, multiplier); each twin converts"),
]



READERS = {"tensorflow": _keras_defaults, "torch": _torch_defaults, "jax": _jax_defaults}
LABELS = {"tensorflow": "Keras", "torch": "PyTorch", "jax": "JAX/Flax"}


def read(name: str) -> dict:
    """{row key: the framework's default, as text}; FrameworkMissing if it is not installed."""
    return READERS[name]()
