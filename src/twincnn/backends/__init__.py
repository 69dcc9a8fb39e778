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
from dataclasses import dataclass, field

from ..errors import UserError


@dataclass(frozen=True)
class Registration:
    """What the parent process knows of a framework without importing it."""

    module: str  # the backend module
    package: str  # the package whose presence means the framework is installed
    extra: str  # the pip extra that installs it: pip install 'twincnn[EXTRA]'
    label: str  # its name in tables
    aliases: tuple[str, ...] = ()  # other names --frameworks accepts
    # a saved model's suffix -> whether the file carries its own architecture (without it the spec comes
    # from --spec or is the notebook's CNN); load_file/save_file read and write these
    file_formats: dict[str, bool] = field(default_factory=dict)
    # the variable that caps its CPU code at an older instruction-set level, read when the framework starts,
    # and its value per level of ISA_CAP_LEVELS: equivalence must hold on every CPU users have
    isa_cap: tuple[str, dict[str, str]] | None = None
    # the module whose read_model(model, input_shape) reads a model its users built themselves (None: not yet),
    # and the top-level packages whose classes make an object such a model
    reader: str | None = None
    model_packages: tuple[str, ...] = ()
    # the module whose train() runs one rank of data-parallel training on the framework's own distributed
    # engine (twincnn.parallel starts the ranks); None: not yet
    parallel: str | None = None
    # what keeps its start-up notices off the terminal (twincnn/quiet.py): its own log variables at their quiet
    # values, and the packages whose native code writes notices while loading, before any variable is read
    quiet_environment: dict[str, str] = field(default_factory=dict)
    quiet_imports: tuple[str, ...] = ()


# The registry: the only list of frameworks. Everything else about a framework is in its module.
BACKENDS = {
    "tensorflow": Registration(
        module="twincnn.backends.tensorflow", package="tensorflow", extra="tf", label="Keras", aliases=("tf", "keras"),
        file_formats={".keras": True, ".h5": True},
        isa_cap=("ONEDNN_MAX_CPU_ISA", {"AVX2": "AVX2", "SSE4_2": "SSE41"}),  # oneDNN's kernels only
        reader="twincnn.backends.tensorflow_read", model_packages=("keras", "tf_keras"),
        parallel="twincnn.backends.tensorflow_parallel",
        quiet_environment={"TF_CPP_MIN_LOG_LEVEL": "2"},  # C++ INFO and WARNING: the CPU-feature notice
        quiet_imports=("tensorflow",)),  # absl's and oneDNN's notices, written while its libraries load
    "torch": Registration(
        module="twincnn.backends.torch", package="torch", extra="torch", label="PyTorch", aliases=("pytorch",),
        file_formats={".pt": False, ".pth": False},
        isa_cap=("ATEN_CPU_CAPABILITY", {"AVX2": "avx2", "SSE4_2": "default"}),
        reader="twincnn.backends.torch_read", model_packages=("torch",), parallel="twincnn.backends.torch_parallel"),
    # flax, not jax: a bare jax install (common) lacks the module library this twin is written in
    "jax": Registration(
        module="twincnn.backends.jax", package="flax", extra="jax", label="JAX/Flax", aliases=("flax",),
        file_formats={".msgpack": False},
        isa_cap=("XLA_FLAGS", {"AVX2": "--xla_cpu_max_isa=AVX2", "SSE4_2": "--xla_cpu_max_isa=SSE4_2"}),
        model_packages=("flax",), parallel="twincnn.backends.jax_parallel"),
}
ALIASES = {alias: name for name, entry in BACKENDS.items() for alias in entry.aliases}
# suffix -> (the framework that reads and writes it, whether the file carries its own architecture)
FILE_FORMATS = {suffix: (name, carries) for name, entry in BACKENDS.items()
                for suffix, carries in entry.file_formats.items()}

ISA_CAPS = {name: entry.isa_cap for name, entry in BACKENDS.items() if entry.isa_cap}  # pytest --isa-cap LEVEL
ISA_CAP_LEVELS = ("AVX2", "SSE4_2")


def isa_cap_environment(level: str, environ: dict) -> dict[str, str]:
    """The variables that run every framework at ``level`` (one of ISA_CAP_LEVELS); XLA_FLAGS keeps the
    other flags ``environ`` already has."""
    if level not in ISA_CAP_LEVELS:
        raise UserError(f"unknown instruction-set cap {level!r}; choose from {', '.join(ISA_CAP_LEVELS)}")
    capped = {}
    for variable, values in ISA_CAPS.values():
        # XLA_FLAGS holds other flags too: keep them, and replace any earlier cap
        name = values[level].split("=")[0]
        earlier = environ.get(variable, "").split() if variable == "XLA_FLAGS" else []
        capped[variable] = " ".join([flag for flag in earlier if flag.split("=")[0] != name] + [values[level]])
    return capped


class FrameworkMissing(UserError, ImportError):
    """The framework is not installed; the message says what to install."""


def canonical_name(name: str) -> str:
    name = ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in BACKENDS:
        raise UserError(f"unknown framework {name!r}; choose from {', '.join(BACKENDS)}")
    return name


def install_hint(name: str) -> str:
    name = canonical_name(name)
    return f"{name} is not installed: pip install 'twincnn[{BACKENDS[name].extra}]'"


def is_available(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[canonical_name(name)].package) is not None


def available() -> list[str]:
    return [name for name in BACKENDS if is_available(name)]


def load(name: str):
    """The backend module for ``name``; FrameworkMissing with the install hint if absent."""
    name = canonical_name(name)
    if not is_available(name):
        raise FrameworkMissing(install_hint(name))
    return importlib.import_module(BACKENDS[name].module)


def parse_list(text: str) -> list[str]:
    """'tensorflow,torch' -> canonical names, duplicates dropped, order kept."""
    names = [canonical_name(part) for part in text.split(",") if part.strip()]
    if not names:
        raise UserError("no framework named; use e.g. --frameworks tensorflow,torch")
    return list(dict.fromkeys(names))


def framework_of(model) -> str:
    """The registered framework one of whose packages defines one of ``model``'s classes; UserError if none."""
    for cls in type(model).__mro__:
        root = cls.__module__.split(".")[0]
        for name, entry in BACKENDS.items():
            if root in entry.model_packages:
                return name
    known = ", ".join(f"{entry.label} ({'/'.join(entry.model_packages)})" for entry in BACKENDS.values())
    raise UserError(f"a {type(model).__module__}.{type(model).__qualname__} is no model of a known framework: {known}")


def load_reader(name: str):
    """The module that reads ``name``'s models built by their users; UserError where there is none yet."""
    entry = BACKENDS[canonical_name(name)]
    if entry.reader is None:
        readable = ", ".join(e.label for e in BACKENDS.values() if e.reader)
        raise UserError(f"twincnn does not read {entry.label} models yet; it reads {readable} models")
    load(name)  # the install hint, where the framework is missing
    return importlib.import_module(entry.reader)


def parallel_frameworks() -> list[str]:
    return [name for name, entry in BACKENDS.items() if entry.parallel]


def parallel_module(name: str) -> str:
    """The name of the module that trains one data-parallel rank of ``name``, imported by nobody here;
    UserError where there is none yet, FrameworkMissing where the framework is not installed."""
    entry = BACKENDS[canonical_name(name)]
    if entry.parallel is None:
        raise UserError(f"{entry.label} has no data-parallel twin yet; frameworks that have one: "
                        f"{', '.join(parallel_frameworks())}")
    if not is_available(name):
        raise FrameworkMissing(install_hint(name))
    return entry.parallel


def load_parallel(name: str):
    return importlib.import_module(parallel_module(name))
