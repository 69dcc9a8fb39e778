"""CIFAR-10 and CIFAR-100 in the layouts they are distributed in, directories as extracted: the binary
version (records of label byte(s) and 3,072 pixel bytes) and the Python version (pickled batches).

The Python version's batches are Python 2 pickles, and a pickle can run any code while it loads. They are
read by :class:`PlainDataUnpickler`, which builds nothing but dicts, lists, bytes, strings, numbers and
numpy arrays of numbers: the only globals it hands out are numpy's array reconstructor and numeric dtypes.
Framework-free: numpy only.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError

IMAGE_SHAPE = (3, 32, 32)  # CIFAR rows are channel-major: all of red, then green, then blue
IMAGE_BYTES = 3 * 32 * 32
MAX_NESTING = 4  # a CIFAR batch is a dict of lists: anything deeper is not one


@dataclass(frozen=True)
class Layout:
    name: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_bytes: int = 0  # binary version: label bytes before each image (CIFAR-100: coarse, fine)
    labels_key: bytes = b""  # Python version: the batch's list of labels
    names_key: bytes = b""  # Python version: the meta file's list of class names


LAYOUTS = (
    Layout("CIFAR-10 (binary version)", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin",
           "batches.meta.txt", label_bytes=1),
    Layout("CIFAR-100 (binary version)", ("train.bin",), "test.bin", "fine_label_names.txt", label_bytes=2),
    Layout("CIFAR-10 (Python version)", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
           labels_key=b"labels", names_key=b"label_names"),
    Layout("CIFAR-100 (Python version)", ("train",), "test", "meta", labels_key=b"fine_labels",
           names_key=b"fine_label_names"),
)


def detect(directory: Path) -> Layout | None:
    """The layout whose test batch or first train batch is a file in ``directory``."""
    for layout in LAYOUTS:
        if (directory / layout.test).is_file() or (directory / layout.train[0]).is_file():
            return layout
    return None


def read(directory: Path, layout: Layout) -> tuple[dict, tuple[str, ...], list[Path]]:
    """(x_train, y_train, x_test, y_test arrays, class names, the files read in the order hashed)."""
    files = [directory / name for name in (*layout.train, layout.test, layout.meta)]
    for path in files:
        if not path.is_file():
            raise DataError(f"{directory}: missing {path.name}; the {layout.name} holds "
                            f"{', '.join(p.name for p in files)} (pass the directory as extracted)")
    read_batch = _binary_batch if layout.label_bytes else _python_batch
    train = [read_batch(path, layout) for path in files[:-2]]
    x_test, y_test = read_batch(files[-2], layout)
    names = _binary_names(files[-1]) if layout.label_bytes else _python_names(files[-1], layout.names_key)
    arrays = {"x_train": np.concatenate([x for x, _ in train]), "y_train": np.concatenate([y for _, y in train]),
              "x_test": x_test, "y_test": y_test}
    return arrays, names, files


def _channels_last(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows.reshape(-1, *IMAGE_SHAPE).transpose(0, 2, 3, 1))


# -- the binary version ------------------------------------------------------------------------------------
def _binary_batch(path: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    raw = path.read_bytes()
    record = layout.label_bytes + IMAGE_BYTES
    if not raw or len(raw) % record:
        raise DataError(f"{path}: {len(raw):,} bytes is not a whole number of {record:,}-byte records of the "
                        f"{layout.name}; the file is truncated or not a CIFAR batch")
    rows = np.frombuffer(raw, np.uint8).reshape(-1, record)
    # the last label byte is the label: CIFAR-100's fine label follows its coarse one
    return _channels_last(rows[:, layout.label_bytes:]), rows[:, layout.label_bytes - 1].astype(np.int64)


def _binary_names(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file of class names; use the file from the CIFAR archive") from None
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise DataError(f"{path}: no class names; use the file from the CIFAR archive")
    return names


# -- the Python version -------------------------------------------------------------------------------------
def _python_batch(path: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    batch = unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or layout.labels_key not in batch:
        raise DataError(f"{path}: not a batch of the {layout.name} (a dict of b'data' and "
                        f"{layout.labels_key!r}); pass the directory as extracted")
    pixels, labels = batch[b"data"], np.asarray(batch[layout.labels_key])
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 \
            or pixels.shape[1] != IMAGE_BYTES:
        shape = getattr(pixels, "shape", type(pixels).__name__)
        raise DataError(f"{path}: b'data' is {shape}, not rows of {IMAGE_BYTES:,} uint8 pixels; "
                        f"use the batch from the CIFAR archive")
    if labels.ndim != 1 or len(labels) != len(pixels) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {layout.labels_key!r} is not one integer label per image "
                        f"({len(pixels):,} images); use the batch from the CIFAR archive")
    return _channels_last(pixels), labels.astype(np.int64)


def _python_names(path: Path, key: bytes) -> tuple[str, ...]:
    meta = unpickle(path)
    names = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, bytes) for n in names):
        raise DataError(f"{path}: no list of class names under {key!r}; use the file from the CIFAR archive")
    try:
        return tuple(n.decode("utf-8") for n in names)
    except UnicodeDecodeError:
        raise DataError(f"{path}: class names that are not UTF-8; use the file from the CIFAR archive") from None


class NotPlainData(Exception):
    """What a pickle holds that is not plain data (the message says what)."""


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array reconstructor, wherever numpy keeps it
_NDARRAY = object()  # what the pickle gets for numpy.ndarray: a token only _new_array accepts


def _new_array(cls, shape, typecode):
    """numpy's _reconstruct for a plain ndarray only; its dtype and data come after, through BUILD."""
    if cls is not _NDARRAY:
        raise NotPlainData(f"an array of class {type(cls).__name__}")
    return _RECONSTRUCT(np.ndarray, shape, typecode)


def _numeric_dtype(spec, align=False, copy=False):
    """numpy.dtype for a dtype of booleans or numbers named by a string: never objects, which would let
    the array hold whatever the pickle builds."""
    if not isinstance(spec, (str, bytes)):
        raise NotPlainData(f"a dtype built from a {type(spec).__name__}")
    dtype = np.dtype(spec.decode("ascii") if isinstance(spec, bytes) else spec, bool(align), bool(copy))
    if dtype.kind not in "biuf":
        raise NotPlainData(f"an array of dtype {dtype}")
    return dtype


SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _new_array,  # numpy 1 (and the CIFAR files' Python 2 numpy)
    ("numpy._core.multiarray", "_reconstruct"): _new_array,  # numpy 2
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _numeric_dtype,
}


class PlainDataUnpickler(pickle.Unpickler):
    """Python 2 pickles (str read as bytes, as the CIFAR page says) of plain data: every global but the
    numpy ones in SAFE_GLOBALS is refused before anything is called."""

    def __init__(self, file):
        super().__init__(file, encoding="bytes")

    def find_class(self, module, name):
        allowed = SAFE_GLOBALS.get((module, name))
        if allowed is None:
            raise NotPlainData(f"{module}.{name}")
        return allowed


# what a malformed pickle makes the unpickler raise
UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                   KeyError, OverflowError)


def unpickle(path: Path):
    """The plain data in the pickle at ``path``, or one line saying why it was refused."""
    with open(path, "rb") as fh:
        try:
            obj = PlainDataUnpickler(fh).load()
            _check_plain(obj, 0)
        except NotPlainData as exc:
            raise DataError(f"{path}: refused to unpickle: it holds {exc}, and a CIFAR batch holds only plain data "
                            f"(dicts, lists, bytes, numbers, numeric arrays); use the files from the CIFAR "
                            f"archive") from None
        except UNPICKLE_ERRORS as exc:
            raise DataError(f"{path}: not a readable CIFAR batch ({type(exc).__name__}: {exc}); use the files "
                            f"from the CIFAR archive".replace("\n", " ")) from None
    return obj


def _check_plain(obj, depth: int) -> None:
    """Nothing but plain containers, scalars and numeric plain ndarrays, at most MAX_NESTING deep."""
    if depth > MAX_NESTING:
        raise NotPlainData(f"containers nested deeper than {MAX_NESTING}")
    if type(obj) is dict:
        for key, value in obj.items():
            _check_plain(key, depth + 1)
            _check_plain(value, depth + 1)
    elif type(obj) in (list, tuple):
        for item in obj:
            _check_plain(item, depth + 1)
    elif type(obj) is np.ndarray:
        if obj.dtype.kind not in "biuf":
            raise NotPlainData(f"an array of dtype {obj.dtype}")
    elif type(obj) not in (bytes, str, int, float, bool, type(None)):
        raise NotPlainData(f"a {type(obj).__name__}")
