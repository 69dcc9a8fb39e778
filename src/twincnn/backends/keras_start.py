"""Keras 3 on a chosen backend: Keras reads KERAS_BACKEND once per process, when it is first imported, so a
process runs one Keras backend only (a twin on another runs in a process of its own: backends/isolated.py)."""

from __future__ import annotations

import os
import sys

VARIABLE = "KERAS_BACKEND"


def start(backend: str):
    """The keras package, running on ``backend``; ImportError where Keras already runs on another here."""
    if "keras" not in sys.modules:
        os.environ[VARIABLE] = backend  # Keras's own variable: it outranks ~/.keras/keras.json
    import keras

    if keras.backend.backend() != backend:
        raise ImportError(f"Keras runs on {keras.backend.backend()} in this process, not on {backend}: "
                          f"Keras reads {VARIABLE} once per process")
    return keras
