"""What each framework does by default where that changes results or timing, read from the installed
framework itself (signatures, initialisers, settings), never typed in. `twincnn audit` shows it.

Each backend module reads its own (audit_defaults()); this module holds the rows and the shared helper.
"""

from __future__ import annotations

import inspect

from .. import backends  # the registry: load() raises FrameworkMissing with the install hint


def signature_default(obj, name):
    """A parameter's default, read from the installed framework's signature."""
    return inspect.signature(obj).parameters[name].default


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
    ("partial_batch", "last partial batch", "kept in both", "kept in every twin (ceil(N / batch) steps an epoch)"),
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



def read(name: str) -> dict:
    """{row key: the framework's default, as text}, from its backend's audit_defaults(); FrameworkMissing
    if it is not installed."""
    return backends.twin(name).audit_defaults()
