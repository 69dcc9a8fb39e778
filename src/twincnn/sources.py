"""What the user names as a model: ``path/to/file.py:factory`` or a saved file, loaded into a model object of its
framework, and models read into canonical specs by their framework's reader. `check`, `compare --model` and
`spec` share it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from . import backends, weightsfile
from .errors import UserError

MNIST_SHAPE = (28, 28, 1)


def load_source(source: str, spec_path: str | None = None):
    """A model object from ``path/to/file.py:name`` (a model, or a callable returning one) or a saved file."""
    path, _, name = source.rpartition(":")
    if path.endswith(".py") and name:
        return _from_factory(Path(path), name)
    return _from_file(Path(source), spec_path)


def _from_factory(path: Path, name: str):
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    module_name = f"_twincnn_user_{path.stem}_{abs(hash(path.resolve()))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a module up by name
    # imported as `python -m` would run it from here: its own directory and the current one on the path
    for directory in (str(path.resolve().parent), str(Path.cwd())):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    loader_spec.loader.exec_module(module)  # the user's code: its own errors keep their traceback
    if not hasattr(module, name):
        raise UserError(f"{path}: defines no {name!r}; name a model, a class or a function returning a model")
    obj = getattr(module, name)
    return obj() if callable(obj) and not _is_model(obj) else obj


def _is_model(obj) -> bool:
    try:
        backends.framework_of(obj)
        return True
    except UserError:
        return False


def _from_file(path: Path, spec_path: str | None):
    from .zoo import load_spec

    if not path.is_file():
        raise UserError(f"{path}: no such file; name a saved model or path/to/file.py:factory")
    if path.suffix.lower() == weightsfile.SUFFIX:
        return _from_neutral_file(path, load_spec(spec_path) if spec_path else None)
    if path.suffix.lower() not in backends.FILE_FORMATS:
        known = ", ".join(backends.FILE_FORMATS)
        raise UserError(f"{path}: unknown model format {path.suffix or '(no suffix)'!r}; use {known} or "
                        f"path/to/file.py:factory")
    name, carries_spec = backends.FILE_FORMATS[path.suffix.lower()]
    spec = load_spec(spec_path) if spec_path or not carries_spec else None
    try:
        model, _ = backends.load(name).load_file(path, spec)
    except ValueError as exc:  # load_file's word for a file that is not a usable model
        raise UserError(f"{path}: {str(exc).splitlines()[0]}") from None
    return model


def _from_neutral_file(path: Path, spec):
    """Canonical weights (their spec in the file's metadata, or --spec) in a twin of the first installed
    framework whose models check reads."""
    try:
        weights, spec = weightsfile.load(path, spec)
    except ValueError as exc:  # weightsfile's word for a file it cannot use
        raise UserError(f"{path}: {str(exc).splitlines()[0]}") from None
    readable = [name for name in backends.available() if backends.BACKENDS[name].reader]
    if not readable:
        raise UserError(f"{path}: no installed framework whose models check reads; pip install 'twincnn[all]'")
    backend = backends.load(readable[0])
    model = backend.build(spec)
    backend.set_weights(model, spec, weights)
    return model


def read_pair(models: list, input_shape: tuple | None):
    """Both models read into specs. Models that know their input's shape are read first: the other is
    read at that shape unless ``input_shape`` is given (MNIST's 28x28x1 where nothing says)."""
    readers = [backends.load_reader(backends.framework_of(m)) for m in models]
    order = sorted(range(len(models)), key=lambda i: readers[i].NEEDS_INPUT_SHAPE)
    read = [None] * len(models)
    for i in order:
        shape = input_shape or next((r.spec.input_shape for r in read if r is not None), None)
        if shape is None and readers[i].NEEDS_INPUT_SHAPE:
            shape = MNIST_SHAPE
        read[i] = readers[i].read_model(models[i], shape)
    return read
