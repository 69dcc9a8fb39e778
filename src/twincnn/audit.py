"""`twincnn audit`: every default where Keras and PyTorch differ for this model and that changes
results or timing. Framework columns are read from the installed frameworks, not typed in."""

from __future__ import annotations

import inspect
import os

from . import backends
from .tables import render

NOT_INSTALLED = "(not installed)"


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
        "loss": f"reduction={loss.reduction!r}",
        "onednn": f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (on)')}",
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
        "loss": f"reduction={inspect.signature(torch.nn.CrossEntropyLoss).parameters['reduction'].default!r}",
        "onednn": f"mkldnn enabled={torch.backends.mkldnn.enabled}",
    }


# key, setting, what the notebook used, what twincnn's fair protocol uses
ROWS = [
    ("conv_init", "conv kernel initialiser", "each framework's own", "Glorot-uniform from NumPy (seed), shared"),
    ("dense_init", "dense kernel initialiser", "each framework's own", "Glorot-uniform from NumPy (seed), shared"),
    ("bias_init", "bias initialiser", "each framework's own", "zeros, shared"),
    ("adam_eps", "Adam epsilon", "1e-7 (Keras) vs 1e-8 (PyTorch)", "1e-7 in both"),
    ("adam_formula", "Adam update formula", "each framework's own", "Keras's, in both (twincnn KerasAdam)"),
    ("adam_betas", "Adam betas", "defaults", "0.9, 0.999"),
    ("shuffle", "data order / shuffling", "fit(shuffle=True) vs DataLoader(shuffle=True)",
     "one NumPy permutation per epoch, same batches in both"),
    ("partial_batch", "last partial batch", "kept in both", "kept in both (938 steps/epoch)"),
    ("intra", "intra-op threads", "defaults", "equal, set by --threads, recorded"),
    ("inter", "inter-op threads", "defaults", "1 where settable, recorded"),
    ("tf32", "float precision on GPUs (TF32)", "defaults", "TF32 off for equivalence runs"),
    ("determinism", "deterministic ops", "defaults", "off: on CPU seed 42 reproduces to the digit"),
    ("fit_epoch", "per-epoch extras", "TF timed with validation each epoch + Keras bar + accuracy metric",
     "no validation or metrics in timed training; one progress bar for both"),
    ("graph", "graph compilation", "fit() graph vs eager loop", "--variant: idiomatic or tuned, same for both"),
    ("layout", "tensor layout", "NHWC vs NCHW", "canonical weights convert; inputs stay NHWC in NumPy"),
    ("precision", "float precision", "float32", "float32"),
    ("loss", "loss reduction", "mean over batch", "mean over batch"),
    ("onednn", "oneDNN (CPU kernels)", "defaults", "defaults, recorded"),
]


def audit_rows() -> list[list[str]]:
    values = {}
    for name, reader in (("tensorflow", _keras_defaults), ("torch", _torch_defaults)):
        try:
            values[name] = reader()
        except backends.FrameworkMissing:
            values[name] = {}
    return [[setting, values["tensorflow"].get(key, NOT_INSTALLED), values["torch"].get(key, NOT_INSTALLED),
             notebook, fair] for key, setting, notebook, fair in ROWS]


def audit_table(markdown: bool = False) -> str:
    headers = ["setting", "Keras default", "PyTorch default", "notebook used", "twincnn fair protocol"]
    return render(headers, audit_rows(), markdown=markdown)
