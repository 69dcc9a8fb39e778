"""One module per framework, each with the same functions.

Every backend module satisfies interface.Backend (names, signatures, what each returns) and its
make_trainer() returns an interface.Trainer; tests/test_interface.py checks every installed one.
load_file raises ValueError (a one-line message) for a file that is not a usable model, and nothing
broader: `twincnn port` turns exactly that into a user error; anything else is a bug and keeps its traceback.
Inputs are canonical: float32 (N, H, W, C); weights are canonical NumPy dicts (see spec.py).
Frameworks are imported only when a backend is loaded, so users of one never pay for the other.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..errors import UserError

# name -> (module, the package that must import, the pip extra that installs it)
BACKENDS = {
    "tensorflow": ("twincnn.backends.tensorflow", "tensorflow", "tf"),
    "torch": ("twincnn.backends.torch", "torch", "torch"),
    # flax, not jax: a bare jax install (common) lacks the module library this twin is written in
    "jax": ("twincnn.backends.jax", "flax", "jax"),
}
ALIASES = {"tf": "tensorflow", "keras": "tensorflow", "pytorch": "torch", "flax": "jax"}
# A saved model's suffix -> (the framework whose load_file/save_file read and write it, whether the file
# carries its own architecture; without it the spec comes from --spec or is the notebook's CNN).
FILE_FORMATS = {".keras": ("tensorflow", True), ".h5": ("tensorflow", True), ".pt": ("torch", False),
                ".pth": ("torch", False), ".msgpack": ("jax", False)}


class FrameworkMissing(UserError, ImportError):
    """The framework is not installed; the message says what to install."""


def canonical_name(name: str) -> str:
    name = ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in BACKENDS:
        raise UserError(f"unknown framework {name!r}; choose from {', '.join(BACKENDS)}")
    return name


def install_hint(name: str) -> str:
    name = canonical_name(name)
    return f"{name} is not installed: pip install 'twincnn[{BACKENDS[name][2]}]'"


def is_available(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[canonical_name(name)][1]) is not None


def available() -> list[str]:
    return [name for name in BACKENDS if is_available(name)]


def load(name: str):
    """The backend module for ``name``; FrameworkMissing with the install hint if absent."""
    name = canonical_name(name)
    if not is_available(name):
        raise FrameworkMissing(install_hint(name))
    return importlib.import_module(BACKENDS[name][0])


def parse_list(text: str) -> list[str]:
    """'tensorflow,torch' -> canonical names, duplicates dropped, order kept."""
    names = [canonical_name(part) for part in text.split(",") if part.strip()]
    if not names:
        raise UserError("no framework named; use e.g. --frameworks tensorflow,torch")
    return list(dict.fromkeys(names))
