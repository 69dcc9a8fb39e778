"""What the user names as a model: ``path/to/file.py:factory`` or a saved file, loaded into a model object of its
framework, and models read into canonical specs by their framework's reader. `check`, `compare --model` and
`spec` share it."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import backends, quiet, usercode, weightsfile
from .errors import ProcessFailed, UserError

MNIST_SHAPE, MNIST_CLASSES = (28, 28, 1), 10  # the bundled data's images and classes


def load_source(source: str, spec_path: str | None = None):
    """A model object from ``path/to/file.py:name`` (a model, or a callable returning one) or a saved file."""
    path, _, name = source.rpartition(":")
    if path.endswith(".py") and name:
        return _from_factory(Path(path), name)
    return _from_file(Path(source), spec_path)


def _from_factory(path: Path, name: str):
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    module_name = usercode.module_name(path)  # how a traceback's frames are known as the user's
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a module up by name
    # imported as `python -m` would run it from here: its own directory and the current one on the path
    for directory in (str(path.resolve().parent), str(Path.cwd())):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    # the user's code runs here: a package it lacks is one line; its other errors are told as its own (cli.main)
    try:
        loader_spec.loader.exec_module(module)
        if not hasattr(module, name):
            raise UserError(f"{path}: defines no {name!r}; name a model, a class or a function returning a model")
        obj = getattr(module, name)
        return obj() if callable(obj) and not _is_model(obj) else obj
    except ModuleNotFoundError as exc:
        missing = usercode.not_installed(exc, path)
        if missing is None:
            raise
        raise UserError(missing) from None


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
    if path.suffix.lower() not in backends.file_formats():
        known = ", ".join(backends.file_formats())
        raise UserError(f"{path}: unknown model format {path.suffix or '(no suffix)'!r}; use {known} or "
                        f"path/to/file.py:factory")
    name, carries_spec = backends.file_owner_here(path.suffix.lower()), backends.file_formats()[path.suffix.lower()][1]
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
    readable = [name for name in backends.available() if backends.BACKENDS[name].reader and backends.runs_here(name)]
    if not readable:
        raise UserError(f"{path}: no installed framework whose models check reads; pip install 'twincnn[all]'")
    backend = backends.load(readable[0])
    model = backend.build(spec)
    backend.set_weights(model, spec, weights)
    return model


def read_pair(models: list, input_shape: tuple | None):
    """The models read into specs; a TwinOf becomes twincnn's twin of the first model's spec. Models that know
    their input's shape are read first: the others are read at that shape unless ``input_shape`` is given
    (MNIST's 28x28x1 where nothing says)."""
    own = [i for i, m in enumerate(models) if not isinstance(m, TwinOf)]
    readers = {i: backends.load_reader(backends.framework_of(models[i])) for i in own}
    read = [None] * len(models)
    for i in sorted(own, key=lambda i: readers[i].NEEDS_INPUT_SHAPE):
        shape = input_shape or next((r.spec.input_shape for r in read if r is not None), None)
        if shape is None and readers[i].NEEDS_INPUT_SHAPE:
            shape = MNIST_SHAPE
        read[i] = readers[i].read_model(models[i], shape)
    return [twin_read(m.framework, read[own[0]].spec) if isinstance(m, TwinOf) else r for m, r in zip(models, read)]


def label_of(model, read) -> str:
    """The framework a model is of, as tables name it."""
    return read.label or backends.BACKENDS[backends.framework_of(model)].label


def read_source(source: str, spec_path: str | None = None, input_shape: tuple | None = None):
    """The model ``source`` names, read into a spec by its framework's reader at ``input_shape`` (H, W, C): the
    size a PyTorch module or a Keras model of open height and width is read at (a module: MNIST's where none is
    given); a Keras model of another fixed size is refused."""
    return read_pair([load_source(source, spec_path)], input_shape)[0]


@dataclass(frozen=True)
class TwinOf:
    """In place of a model: twincnn's twin of the other model's spec in ``framework`` (check --twin)."""

    framework: str


def twin_read(framework: str, spec, seed: int = 0):
    """twincnn's own twin of ``spec`` in ``framework``, seen as a read model is (check --twin). Per-layer outputs,
    which only locate a difference, are the NumPy reference's on the twin's weights (every twin is held to that
    reference by twincnn's tests)."""
    from . import reference
    from .backends.interface import ReadModel

    name = backends.canonical_name(framework)
    backend = backends.twin(name)
    model = backend.build(spec, seed=seed)
    return ReadModel(backend, model, spec, lambda x: reference.activations(spec, backend.get_weights(model, spec), x),
                     label=f"twincnn's {backends.BACKENDS[name].label} twin")


SPEC_FILE, WEIGHTS_FILE = "model_spec.json", "model_weights.safetensors"


def read_in_worker(source: str, spec_path: str | None, input_shape: tuple, workdir: Path,
                   keep_weights: bool) -> tuple:
    """(spec, path of its weights file or None): ``source`` read in a process of its own, so that the caller
    imports no framework. Bad input is the worker's one line, raised here as a UserError."""
    command = [sys.executable, "-m", "twincnn.sources", source, "--out", str(workdir),
               "--input-shape", ",".join(map(str, input_shape))]
    command += ["--spec", spec_path] if spec_path else []
    command += ["--keep-weights"] if keep_weights else []
    done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if done.returncode < 0:  # a signal from outside (the out-of-memory killer, a user's kill)
        raise UserError(f"reading {source} was stopped by {signal.Signals(-done.returncode).name} (out of memory?)")
    if done.returncode == USER_ERROR_EXIT:  # its last line says what; any before it are the user's own frames
        *frames, line = done.stderr.strip().splitlines() or ["(no message)"]
        sys.stderr.write("".join(f"{frame}\n" for frame in frames))
        raise UserError(line)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise ProcessFailed(f"reading {source} failed in a process of its own (exit {done.returncode}; its "
                            f"traceback is above)")
    if quiet.is_verbose():  # what the frameworks and the user's code said on the way
        sys.stderr.write(done.stderr)
    from .spec import Spec

    spec = Spec.from_dict(json.loads((workdir / SPEC_FILE).read_text()))
    return spec, (workdir / WEIGHTS_FILE if keep_weights else None)


USER_ERROR_EXIT = 2


def main(argv=None) -> int:
    """`python -m twincnn.sources SRC --out DIR [--spec F] [--input-shape H,W,C] [--keep-weights]`: the spec of
    SRC in DIR/model_spec.json, and with --keep-weights its weights in DIR/model_weights.safetensors."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m twincnn.sources")
    parser.add_argument("source")
    parser.add_argument("--out", required=True)
    parser.add_argument("--spec")
    parser.add_argument("--input-shape")
    parser.add_argument("--keep-weights", action="store_true")
    args = parser.parse_args(argv)
    quiet.start()  # before the user's file imports a framework
    shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
    try:
        read = read_source(args.source, args.spec, shape)
    except UserError as exc:
        print(f"{exc}", file=sys.stderr)
        return USER_ERROR_EXIT
    except Exception as exc:  # an error in the user's own code is theirs: its frames, then one line
        blamed = usercode.blame(exc)
        if blamed is None:
            raise
        sys.stderr.write(blamed[0])
        print(f"{blamed[1]} raised {type(exc).__name__} (traceback above)", file=sys.stderr)
        return USER_ERROR_EXIT
    out = Path(args.out)
    if args.keep_weights:
        weightsfile.save(out / WEIGHTS_FILE, read.spec, read.get_weights())
    (out / SPEC_FILE).write_text(json.dumps(read.spec.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
