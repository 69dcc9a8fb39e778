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
import os
import sys
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
    # other packages the twin needs besides ``package`` (the native twin's module it shares code with)
    requires: tuple[str, ...] = ()
    # (package, variable, value): a setting that ``package`` reads once per process, when it is imported (Keras's
    # backend). Twins that need different values cannot share a process: each runs in its own where another holds
    # this one (backends/isolated.py).
    process_setting: tuple[str, str, str] | None = None
    # the registered twin of the framework this one runs on (Keras on JAX: jax); compare judges the two together,
    # which says what the layer above costs over the framework itself
    runs_on: str | None = None


# The registry: the only list of frameworks. Everything else about a framework is in its module.
BACKENDS = {
    "tensorflow": Registration(
        module="twincnn.backends.tensorflow", package="tensorflow", extra="tf", label="Keras",
        aliases=("tf", "keras", "keras-tensorflow"),
        file_formats={".keras": True, ".h5": True},
        isa_cap=("ONEDNN_MAX_CPU_ISA", {"AVX2": "AVX2", "SSE4_2": "SSE41"}),  # oneDNN's kernels only
        reader="twincnn.backends.tensorflow_read", model_packages=("keras", "tf_keras"),
        parallel="twincnn.backends.tensorflow_parallel",
        quiet_environment={"TF_CPP_MIN_LOG_LEVEL": "2"},  # C++ INFO and WARNING: the CPU-feature notice
        quiet_imports=("tensorflow",),  # absl's and oneDNN's notices, written while its libraries load
        requires=("keras",), process_setting=("keras", "KERAS_BACKEND", "tensorflow")),
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
    # Keras 3 on JAX and on PyTorch: the Keras twin's model on another engine ("what Keras costs over it")
    "keras-jax": Registration(
        module="twincnn.backends.keras_jax", package="keras", extra="keras-jax", label="Keras/JAX",
        file_formats={".keras": True},
        isa_cap=("XLA_FLAGS", {"AVX2": "--xla_cpu_max_isa=AVX2", "SSE4_2": "--xla_cpu_max_isa=SSE4_2"}),
        reader="twincnn.backends.tensorflow_read", model_packages=("keras",),
        requires=("flax",), process_setting=("keras", "KERAS_BACKEND", "jax"), runs_on="jax"),
    "keras-torch": Registration(
        module="twincnn.backends.keras_torch", package="keras", extra="keras-torch", label="Keras/PyTorch",
        file_formats={".keras": True},
        isa_cap=("ATEN_CPU_CAPABILITY", {"AVX2": "avx2", "SSE4_2": "default"}),
        reader="twincnn.backends.tensorflow_read", model_packages=("keras",),
        requires=("torch",), process_setting=("keras", "KERAS_BACKEND", "torch"), runs_on="torch"),
}
# The natives' names: `compare` runs these when --frameworks does not say (the Keras twins on other backends are
# asked for by name, or by `all`)
NATIVE = ("tensorflow", "torch", "jax")


def aliases() -> dict[str, str]:
    """Every other name --frameworks accepts -> the registered name (read from BACKENDS at each call)."""
    return {alias: name for name, entry in BACKENDS.items() for alias in entry.aliases}


def file_formats() -> dict[str, tuple[str, bool]]:
    """suffix -> (the first registered framework that reads and writes it, whether the file carries its own
    architecture)."""
    formats = {}
    for name, entry in BACKENDS.items():
        for suffix, carries in entry.file_formats.items():
            formats.setdefault(suffix, (name, carries))
    return formats


def file_owners(suffix: str) -> list[str]:
    """Every registered framework that reads and writes files ending in ``suffix``, in registry order."""
    return [name for name, entry in BACKENDS.items() if suffix in entry.file_formats]


def file_owner_here(suffix: str) -> str:
    """The framework that reads a file ending in ``suffix`` in this process: the first registered owner that is
    installed and runs here (runs_here: a .keras file, where Keras runs on JAX or KERAS_BACKEND=jax says it will,
    is Keras on JAX's), else the first owner."""
    owners = file_owners(suffix)
    return next((name for name in owners if is_available(name) and runs_here(name)), owners[0])


def isa_caps() -> dict[str, tuple[str, dict[str, str]]]:
    """framework -> (its ISA cap variable, its value per level): pytest --isa-cap LEVEL."""
    return {name: entry.isa_cap for name, entry in BACKENDS.items() if entry.isa_cap}


ISA_CAP_LEVELS = ("AVX2", "SSE4_2")


def isa_cap_environment(level: str, environ: dict) -> dict[str, str]:
    """The variables that run every framework at ``level`` (one of ISA_CAP_LEVELS); XLA_FLAGS keeps the
    other flags ``environ`` already has."""
    if level not in ISA_CAP_LEVELS:
        raise UserError(f"unknown instruction-set cap {level!r}; choose from {', '.join(ISA_CAP_LEVELS)}")
    capped = {}
    for variable, values in dict(isa_caps().values()).items():
        # XLA_FLAGS holds other flags too: keep them, and replace any earlier cap
        name = values[level].split("=")[0]
        earlier = environ.get(variable, "").split() if variable == "XLA_FLAGS" else []
        capped[variable] = " ".join([flag for flag in earlier if flag.split("=")[0] != name] + [values[level]])
    return capped


class FrameworkMissing(UserError, ImportError):
    """The framework is not installed; the message says what to install."""


def canonical_name(name: str) -> str:
    name = aliases().get(name.strip().lower(), name.strip().lower())
    if name not in BACKENDS:
        raise UserError(f"unknown framework {name!r}; choose from {', '.join(BACKENDS)}")
    return name


def install_hint(name: str) -> str:
    name = canonical_name(name)
    return f"{name} is not installed: pip install 'twincnn[{BACKENDS[name].extra}]'"


def is_available(name: str) -> bool:
    entry = BACKENDS[canonical_name(name)]
    return all(importlib.util.find_spec(package) is not None for package in (entry.package, *entry.requires))


def loadable_here(name: str) -> bool:
    """Whether ``name``'s twin can run in this process: no twin started here has settled its process setting
    otherwise (Keras, imported, runs on the backend it read then)."""
    setting = BACKENDS[canonical_name(name)].process_setting
    if setting is None or setting[0] not in sys.modules:
        return True
    package, variable, value = setting
    if variable in os.environ:
        return os.environ[variable] == value
    try:  # started by someone who did not set the variable: the twin's module says whether it can start here
        importlib.import_module(BACKENDS[canonical_name(name)].module)
    except ImportError:
        return False
    return True


class NeedsOwnProcess(UserError):
    """The twin cannot run in this process (another twin has settled a setting it needs otherwise); run it with
    isolated.start(name), as twin() does."""


def available() -> list[str]:
    return [name for name in BACKENDS if is_available(name)]


def load(name: str):
    """The backend module for ``name``; FrameworkMissing with the install hint if absent."""
    name = canonical_name(name)
    if not is_available(name):
        raise FrameworkMissing(install_hint(name))
    if not loadable_here(name):
        package, variable, value = BACKENDS[name].process_setting
        raise NeedsOwnProcess(f"{name} needs {variable}={value}, and {package} already runs with "
                              f"{variable}={os.environ.get(variable)} in this process; it runs in a process of its own")
    return importlib.import_module(BACKENDS[name].module)


def twin(name: str):
    """``name``'s backend module where it runs here by default (runs_here), else the same functions answered by a
    process of its own (isolated.py: models stay there, NumPy arrays and specs cross); FrameworkMissing where it is
    not installed."""
    name = canonical_name(name)
    if not is_available(name):
        raise FrameworkMissing(install_hint(name))
    if runs_here(name):
        return load(name)
    from . import isolated

    return isolated.start(name)


def runs_here(name: str) -> bool:
    """Whether twin() runs ``name`` in this process: where it has no process setting; where the package that reads
    it has started, if that runs with its value; before then, if the variable is set to its value, or else if it is
    the first installed twin that needs that package (Keras: the TensorFlow twin), so that which twin runs here never
    depends on which was asked for first."""
    setting = BACKENDS[canonical_name(name)].process_setting
    if setting is None or setting[0] in sys.modules:
        return loadable_here(name)
    package, variable, value = setting
    if os.environ.get(variable):  # set before the package starts: the twin it names runs here
        return os.environ[variable] == value
    first = next(other for other, entry in BACKENDS.items()
                 if entry.process_setting and entry.process_setting[0] == package and is_available(other))
    return first == canonical_name(name)


def natives() -> list[str]:
    """The installed native twins: what commands take where --frameworks is not given."""
    return [name for name in available() if name in NATIVE]


def parse_list(text: str) -> list[str]:
    """'tensorflow,torch' -> canonical names, duplicates dropped, order kept; 'all': every installed twin."""
    if text.strip().lower() == "all":
        return available()
    names = [canonical_name(part) for part in text.split(",") if part.strip()]
    if not names:
        raise UserError("no framework named; use e.g. --frameworks tensorflow,torch")
    return list(dict.fromkeys(names))


def framework_of(model) -> str:
    """The registered framework one of whose packages defines one of ``model``'s classes, and that runs in this
    process (a Keras model is of the Keras twin on the backend Keras runs on here); UserError if none."""
    for cls in type(model).__mro__:
        root = cls.__module__.split(".")[0]
        for name, entry in BACKENDS.items():
            if root in entry.model_packages and loadable_here(name):
                return name
    known = ", ".join(f"{entry.label} ({'/'.join(entry.model_packages)})" for entry in BACKENDS.values())
    raise UserError(f"a {type(model).__module__}.{type(model).__qualname__} is no model of a known framework: {known}")


def reader_twin(reader: str) -> str:
    """The first registered framework read by the module ``reader`` that runs in this process (Keras's reader: the
    Keras twin on Keras's backend here)."""
    return next(name for name, entry in BACKENDS.items() if entry.reader == reader and loadable_here(name))


def load_reader(name: str):
    """The module that reads ``name``'s models built by their users; UserError where there is none yet."""
    entry = BACKENDS[canonical_name(name)]
    if entry.reader is None:
        first_of_reader = {}  # one reader reads Keras's models on every backend: named once
        for e in BACKENDS.values():
            if e.reader:
                first_of_reader.setdefault(e.reader, e.label)
        readable = ", ".join(first_of_reader.values())
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
