"""A rank whose loss is scaled by 1/R on top of what its engine already does: the classic data-parallel fault
(a mean over ranks taken twice), which leaves the gradient's direction and only its size wrong.
Run as a script in place of `python -m twincnn.parallel.rank` (launch.RANK_COMMAND), the framework's name as
its argument."""

import os
import sys

from twincnn.parallel import rank


def scaled(loss):
    world = int(os.environ["WORLD_SIZE"])
    return lambda *args, **kwargs: loss(*args, **kwargs) / world


def scale_torch():
    import torch.nn.functional

    torch.nn.functional.cross_entropy = scaled(torch.nn.functional.cross_entropy)


def scale_tensorflow():
    from twincnn.backends.tensorflow import keras

    keras.losses.sparse_categorical_crossentropy = scaled(keras.losses.sparse_categorical_crossentropy)


def scale_jax():
    import optax

    optax.softmax_cross_entropy_with_integer_labels = scaled(optax.softmax_cross_entropy_with_integer_labels)


# The loss function each twin's step calls, looked up when the step is traced or run.
SCALE = {"torch": scale_torch, "tensorflow": scale_tensorflow, "jax": scale_jax}
SCALE[sys.argv[1]]()
sys.exit(rank.from_parent())
