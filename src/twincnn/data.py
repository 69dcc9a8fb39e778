"""MNIST-format datasets: the bundled, checksummed copy, another .npz, or IDX files.

Every loader returns a :class:`Dataset` of uint8 images (N, 28, 28) and labels 0..9,
or raises :class:`DataError` with one line naming the file and the problem.
"""

from __future__ import annotations

import gzip
import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import UserError

BUNDLED_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# IDX files as MNIST is distributed; both the dashed and the dotted spelling exist in the wild.
IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
IDX_MAGIC = {"images": 2051, "labels": 2049}
IDX_HEADER_INT = ">u4"  # IDX headers are big-endian unsigned 32-bit ints
HASH_CHUNK_BYTES = 1 << 20  # hash in pieces: an 11 MB file need not sit in memory twice


class DataError(UserError, ValueError):
    """A dataset that cannot be used; the message is one line naming file and problem."""


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # uint8 (N, 28, 28)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str  # of the .npz, or of the four IDX files concatenated in IDX_FILES order

    def images(self, split: str) -> np.ndarray:
        """Float32 (N, 28, 28, 1) in [0, 1]: the canonical, channels-last model input."""
        x = self.x_train if split == "train" else self.x_test
        return (x.astype(np.float32) / 255.0)[..., None]

    def labels(self, split: str) -> np.ndarray:
        return self.y_train if split == "train" else self.y_test

    def subset(self, n_train: int, n_test: int) -> "Dataset":
        return Dataset(self.x_train[:n_train], self.y_train[:n_train], self.x_test[:n_test],
                       self.y_test[:n_test], f"{self.source} (first {n_train}/{n_test})", self.sha256)

    def stats(self) -> dict:
        out = {"source": self.source, "sha256": self.sha256}
        for split in ("train", "test"):
            x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
            out[split] = {
                "images": int(len(x)), "labels": int(len(y)),
                "class_counts": np.bincount(y, minlength=NUM_CLASSES).tolist(),
                "pixel_min": int(x.min()), "pixel_max": int(x.max()),
                "pixel_mean": float(x.mean()),
            }
        return out


def bundled_path() -> Path:
    return Path(str(resources.files("twincnn") / "data" / "mnist.npz"))


def sha256_of(*paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK_BYTES):  # pragma: no mutate (any read size: the same digest)
                digest.update(chunk)
    return digest.hexdigest()


def load(path=None) -> Dataset:
    """The bundled MNIST (checksum verified), or the .npz file / IDX directory at ``path``."""
    if path is None:
        path = bundled_path()
        if not path.is_file():
            raise DataError(f"{path}: the bundled MNIST is missing; reinstall twincnn")
        digest = sha256_of(path)
        if digest != BUNDLED_SHA256:
            raise DataError(f"{path}: checksum mismatch (sha256 {digest[:12]}..., expected "
                            f"{BUNDLED_SHA256[:12]}...); the bundled copy is damaged, reinstall twincnn")
        return _load_npz(path, digest, source=f"bundled MNIST ({path})")
    path = Path(path)
    if path.is_dir():
        return _load_idx_dir(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; pass an MNIST .npz or a directory of IDX files")
    return _load_npz(path, sha256_of(path), source=str(path))


# not a zip, truncated, a damaged compressed member, pickled objects
NPZ_READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError)


def _unreadable(path, exc) -> DataError:
    return DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})".replace("\n", " "))


def _load_npz(path: Path, digest: str, source: str) -> Dataset:
    try:  # allow_pickle=False is numpy's default, spelled out: an .npz from elsewhere must not run code
        npz = np.load(path, allow_pickle=False)  # pragma: no mutate (None or the default: the same False)
    except NPZ_READ_ERRORS as exc:
        raise _unreadable(path, exc) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a .npy file: one bare array
        raise DataError(f"{path}: holds one array, not an .npz archive of {', '.join(NPZ_KEYS)}")
    try:
        with npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)}; expected {', '.join(NPZ_KEYS)}")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except NPZ_READ_ERRORS as exc:  # a damaged member shows only when it is read
        raise _unreadable(path, exc) from None
    return _validated(arrays, path, source, digest)


def _open_idx(directory: Path, names) -> tuple[Path, bytes]:
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                try:
                    raw = candidate.read_bytes()
                    return candidate, gzip.decompress(raw) if candidate.suffix == ".gz" else raw
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    raise DataError(f"{candidate}: cannot decompress ({exc})") from None
    raise DataError(f"{directory}: missing {names[0]} (or {names[0]}.gz, {names[1]}); "
                    f"an IDX directory needs the four MNIST files")


def parse_idx(raw: bytes, kind: str, path) -> np.ndarray:
    """Parse one IDX file (big-endian header; uint8 data) of 'images' or 'labels'."""
    dims = 3 if kind == "images" else 1
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, header needs {header})")
    magic, *shape = (int(v) for v in np.frombuffer(raw, IDX_HEADER_INT, count=1 + dims))
    if magic != IDX_MAGIC[kind]:
        raise DataError(f"{path}: bad IDX magic number {magic} (expected {IDX_MAGIC[kind]} for {kind} "
                        f"of unsigned bytes); is this the right file?")
    shape = tuple(shape)
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: truncated or oversized IDX file: header says {shape} = {expected} bytes "
                        f"of data, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _load_idx_dir(directory: Path) -> Dataset:
    arrays, files = {}, []
    for key, names in IDX_FILES.items():
        path, raw = _open_idx(directory, names)
        arrays[key] = parse_idx(raw, "images" if key.startswith("x") else "labels", path)
        files.append(path)
    return _validated(arrays, directory, str(directory), sha256_of(*files))


def _validated(arrays: dict, path, source: str, digest: str) -> Dataset:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"{path}: x_{split} has shape {x.shape}; expected (N, 28, 28) single-channel images")
        if y.ndim != 1:
            raise DataError(f"{path}: y_{split} has shape {y.shape}; expected (N,) labels")
        if len(x) != len(y):
            raise DataError(f"{path}: {len(x)} images but {len(y)} labels in the {split} split")
        if len(x) == 0:
            raise DataError(f"{path}: the {split} split is empty")
        if np.issubdtype(x.dtype, np.floating):
            if not np.isfinite(x).all():
                raise DataError(f"{path}: x_{split} contains NaN or infinite pixels")
            if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
                raise DataError(f"{path}: x_{split} has float pixels outside whole numbers 0..255; "
                                f"store raw uint8 pixels")
        elif x.dtype != np.uint8:
            if not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() > 255:
                raise DataError(f"{path}: x_{split} has dtype {x.dtype}; expected uint8 pixels 0..255")
        if np.issubdtype(y.dtype, np.floating):
            if not np.isfinite(y).all():
                raise DataError(f"{path}: y_{split} contains NaN or infinite labels")
            if not np.array_equal(y, np.round(y)):
                raise DataError(f"{path}: y_{split} has non-integer labels")
        elif not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}: y_{split} has dtype {y.dtype}; expected integer labels 0..9")
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            bad = y[(y < 0) | (y >= NUM_CLASSES)]
            raise DataError(f"{path}: y_{split} has labels outside 0..9 (e.g. {bad[0]}); "
                            f"twincnn models have {NUM_CLASSES} classes")
        arrays[f"x_{split}"] = np.ascontiguousarray(x, dtype=np.uint8)
        arrays[f"y_{split}"] = y.astype(np.int64)
    return Dataset(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], source, digest)
