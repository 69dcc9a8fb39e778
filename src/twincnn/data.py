"""Datasets: the bundled, checksummed MNIST, another .npz, IDX files, an image folder, or CIFAR-10/100.

Every loader returns a :class:`Dataset` of channels-last images (N, H, W, C), uint8 (divided by 255 for
the model) or float32 (taken as they are), int64 labels 0..K-1 and K class names; or raises
:class:`DataError` with one line naming the file and the fix. Image folders are decoded by
:mod:`twincnn.imagefolder`, CIFAR directories read by :mod:`twincnn.cifar`.
"""

from __future__ import annotations

import dataclasses
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
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
CLASS_NAMES_KEY = "class_names"  # optional in an .npz: one name per class
COLOR_MODES = ("grayscale", "rgb", "rgba")
# A label is a class index; more classes than this is a label written as something else (an ID, a hash).
MAX_CLASSES = 100_000
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
# Pixel statistics run over this many values at a time: a float64 copy of all of CIFAR would take 1.2 GB.
STATS_CHUNK_VALUES = 1 << 22  # pragma: no mutate (any chunk size: the same statistics)
LAYOUTS = ("a .npz file, an image folder (train/ and test/ of class folders), a CIFAR-10/100 directory or MNIST "
           "IDX files")


class DataError(UserError, ValueError):
    """A dataset that cannot be used; the message is one line naming file and problem."""


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # uint8 or float32 (N, H, W, C); (N, H, W) is given its channel axis
    y_train: np.ndarray  # int64 (N,), each < len(class_names)
    x_test: np.ndarray  # the same image shape and dtype as x_train
    y_test: np.ndarray
    source: str
    sha256: str  # of the file(s) as read, or (image folders) of the decoded arrays and class names
    class_names: tuple[str, ...] = ()  # default: "0".."K-1", K = the largest label + 1
    notes: tuple[str, ...] = ()  # what loading did that the report should say
    layout: str = ""
    skipped_files: int | None = None  # image folders: files of other extensions; None elsewhere

    def __post_init__(self):
        for name in ("x_train", "x_test"):
            x = getattr(self, name)
            if x.ndim == 3:
                object.__setattr__(self, name, x[..., None])
        if not self.class_names:
            count = int(max(self.y_train.max(initial=-1), self.y_test.max(initial=-1))) + 1
            object.__setattr__(self, "class_names", tuple(str(k) for k in range(count)))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image: the model's input."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def pixel_scale(self) -> str:
        return "uint8 / 255" if self.x_train.dtype == np.uint8 else "float32 as stored"

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)

    def images(self, split: str) -> np.ndarray:
        """Float32 (N, H, W, C), the canonical channels-last model input: uint8 pixels / 255, float32 ones as
        stored (a copy, so that the caller may change it)."""
        x = self._split(split)[0]
        if x.dtype == np.uint8:
            return x.astype(np.float32) / 255.0
        return x.copy()

    def labels(self, split: str) -> np.ndarray:
        return self._split(split)[1]

    def subset(self, n_train: int, n_test: int) -> "Dataset":
        """The first ``n_train``/``n_test`` images (all of a smaller split); ``source`` says what was taken."""
        n_train, n_test = min(n_train, len(self.y_train)), min(n_test, len(self.y_test))
        return dataclasses.replace(self, x_train=self.x_train[:n_train], y_train=self.y_train[:n_train],
                                   x_test=self.x_test[:n_test], y_test=self.y_test[:n_test],
                                   source=f"{self.source} (first {n_train:,}/{n_test:,} images)")

    def stats(self) -> dict:
        """Counts, class balance and per-channel pixel statistics of each split, and where the data came from."""
        out = {"source": self.source, "sha256": self.sha256, "layout": self.layout,
               "shape": list(self.input_shape), "channels": self.input_shape[-1],
               "pixel_scale": self.pixel_scale, "class_names": list(self.class_names), "notes": list(self.notes)}
        if self.skipped_files is not None:
            out["skipped_files"] = self.skipped_files
        for split in ("train", "test"):
            x, y = self._split(split)
            mean, std = channel_mean_std(x)
            out[split] = {
                "images": int(len(x)), "labels": int(len(y)),
                "class_counts": np.bincount(y, minlength=self.num_classes).tolist(),
                "pixel_min": x.min(axis=(0, 1, 2)).tolist(), "pixel_max": x.max(axis=(0, 1, 2)).tolist(),
                "pixel_mean": mean, "pixel_std": std,
            }
        return out


def channel_mean_std(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of (N, H, W, C) pixels, in float64, over a
    few images at a time: two passes, so that the deviations are not the difference of two large sums."""
    flat = x.reshape(len(x), -1, x.shape[-1])
    step = max(1, STATS_CHUNK_VALUES // flat[0].size)  # pragma: no mutate (any step >= 1: the same sums)
    chunks = [flat[i:i + step] for i in range(0, len(flat), step)]
    count = flat.shape[0] * flat.shape[1]
    mean = sum(chunk.sum(axis=(0, 1), dtype=np.float64) for chunk in chunks) / count
    squares = sum(((chunk - mean) ** 2).sum(axis=(0, 1)) for chunk in chunks)
    return mean.tolist(), np.sqrt(squares / count).tolist()


def bundled_path() -> Path:
    return Path(str(resources.files("twincnn") / "data" / "mnist.npz"))


def sha256_of(*paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK_BYTES):  # pragma: no mutate (any read size: the same digest)
                digest.update(chunk)
    return digest.hexdigest()


def load(path=None, *, color_mode: str | None = None, image_size: tuple[int, int] | None = None) -> Dataset:
    """The bundled MNIST (checksum verified), or the .npz file, image folder, CIFAR directory or IDX
    directory at ``path``. ``color_mode`` ("grayscale", "rgb", "rgba"; default: grayscale where every image
    is) and ``image_size`` ((H, W): resize every image) apply to image folders only."""
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise DataError(f"color mode {color_mode!r} is not one of {', '.join(COLOR_MODES)}")
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise DataError(f"image size {image_size!r} is not (height, width) in pixels")
    if image_size is not None:  # one spelling (a list from JSON, a tuple from the command line): one cache entry
        image_size = tuple(int(v) for v in image_size)
    folder_options = color_mode is not None or image_size is not None
    if path is None:
        if folder_options:
            raise _folder_options_error("the bundled MNIST", "an .npz file")
        return _load_bundled()
    path = Path(path)
    if path.is_dir() and _is_image_folder(path):
        return _two_classes_at_least(_load_image_folder(path, color_mode, image_size), path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; pass {LAYOUTS}")
    loader, layout = _directory_loader(path) if path.is_dir() else (_load_npz_file, "an .npz file")
    if folder_options:
        raise _folder_options_error(path, layout)
    return _two_classes_at_least(loader(path), path)


def _two_classes_at_least(dataset: Dataset, path) -> Dataset:
    if dataset.num_classes < 2:
        raise DataError(f"{path}: one class only ({dataset.class_names[0]!r}); a classifier needs two or more")
    return dataset


def check_fits(spec, dataset: Dataset, network: str) -> None:
    """One line naming both shapes where the network's input or output does not match the data."""
    if spec.input_shape != dataset.input_shape:
        raise DataError(f"the network ({network}) takes images of {shape_text(spec.input_shape)}, the data's "
                        f"are {shape_text(dataset.input_shape)} ({dataset.source}); give a network that fits "
                        f"the data")
    if spec.num_classes != dataset.num_classes:
        raise DataError(f"the network ({network}) gives {spec.num_classes} class scores, the data has "
                        f"{dataset.num_classes} classes ({dataset.source}); give a network with "
                        f"{dataset.num_classes} outputs")


def options(args) -> dict:
    """load()'s options that a command line set (an image folder's colour mode and image size)."""
    return {key: value for key, value in (("color_mode", args.color_mode), ("image_size", args.image_size))
            if value is not None}


def _folder_options_error(what, layout) -> DataError:
    return DataError(f"{what}: the colour mode and image size (--color-mode, --image-size) apply to image folders "
                     f"only, not to {layout}; leave them out")


def _load_bundled() -> Dataset:
    path = bundled_path()
    if not path.is_file():
        raise DataError(f"{path}: the bundled MNIST is missing; reinstall twincnn")
    digest = sha256_of(path)
    if digest != BUNDLED_SHA256:
        raise DataError(f"{path}: checksum mismatch (sha256 {digest[:12]}..., expected "
                        f"{BUNDLED_SHA256[:12]}...); the bundled copy is damaged, reinstall twincnn")
    return _load_npz(path, digest, source=f"bundled MNIST ({path})", layout=".npz file")


def _load_npz_file(path: Path) -> Dataset:
    return _load_npz(path, sha256_of(path), source=str(path), layout=".npz file")


def _is_image_folder(directory: Path) -> bool:
    """A directory with a train/ or test/ folder (CIFAR-100's python version has train and test *files*)."""
    return (directory / "train").is_dir() or (directory / "test").is_dir()


def _directory_loader(directory: Path):
    """(the loader, the layout's name) for a directory that is not an image folder."""
    from . import cifar

    layout = cifar.detect(directory)
    if layout is not None:
        return (lambda d: _load_cifar(d, layout)), f"a {layout.name} directory"
    if any((directory / name).is_file() or (directory / f"{name}.gz").is_file()
           for names in IDX_FILES.values() for name in names):
        return _load_idx_dir, "an IDX directory"
    raise DataError(f"{directory}: no dataset found in this directory; pass {LAYOUTS}")


def _load_image_folder(directory: Path, color_mode, image_size) -> Dataset:
    from . import imagefolder

    d = imagefolder.load(directory, color_mode, image_size)
    return Dataset(d.x_train, d.y_train, d.x_test, d.y_test, str(directory), d.sha256, d.class_names, d.notes,
                   "image folder (train/<class>/*, test/<class>/*)", d.skipped_files)


def _load_cifar(directory: Path, layout) -> Dataset:
    from . import cifar

    arrays, class_names, files = cifar.read(directory, layout)
    return _validated(arrays, directory, str(directory), sha256_of(*files), layout.name, class_names)


# not a zip, truncated, a damaged compressed member, pickled objects
NPZ_READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError)


def _unreadable(path, exc) -> DataError:
    return DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})".replace("\n", " "))


def _load_npz(path: Path, digest: str, source: str, layout: str) -> Dataset:
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
            names = npz[CLASS_NAMES_KEY] if CLASS_NAMES_KEY in npz.files else None
    except DataError:
        raise
    except NPZ_READ_ERRORS as exc:  # a damaged member shows only when it is read
        raise _unreadable(path, exc) from None
    class_names = None if names is None else _class_names(names, path)
    return _validated(arrays, path, source, digest, layout, class_names)


def _class_names(names: np.ndarray, path) -> tuple[str, ...]:
    """An .npz's class_names: a 1-D array of distinct strings (str or UTF-8 bytes)."""
    if names.ndim != 1 or len(names) == 0 or names.dtype.kind not in "US":
        raise DataError(f"{path}: class_names is a {names.dtype} array of shape {names.shape}; "
                        f"store a 1-D array of strings, one name per class")
    try:
        decoded = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names.tolist())
    except UnicodeDecodeError:
        raise DataError(f"{path}: class_names holds bytes that are not UTF-8; store them as str") from None
    if len(set(decoded)) != len(decoded):
        twice = next(n for n in decoded if decoded.count(n) > 1)
        raise DataError(f"{path}: class_names names {twice!r} twice; give each class its own name")
    return decoded


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
    return _validated(arrays, directory, str(directory), sha256_of(*files), "IDX files (MNIST layout)")


def shape_text(shape) -> str:
    """(32, 32, 3) -> '32x32x3'."""
    return "x".join(str(d) for d in shape)


def _validated(arrays: dict, path, source: str, digest: str, layout: str, class_names=None) -> Dataset:
    """The Dataset of ``arrays`` once every check has passed; ``class_names`` None: "0".."K-1"."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or min(x.shape[1:]) < 1:
            raise DataError(f"{path}: x_{split} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) images")
        if y.ndim != 1:
            raise DataError(f"{path}: y_{split} has shape {y.shape}; expected (N,) labels")
        if len(x) != len(y):
            raise DataError(f"{path}: {len(x)} images but {len(y)} labels in the {split} split")
        if len(x) == 0:
            raise DataError(f"{path}: the {split} split is empty")
        arrays[f"x_{split}"] = _pixels(x, f"x_{split}", path)
        arrays[f"y_{split}"] = _labels(y, f"y_{split}", path)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: x_train images are {shape_text(x_train.shape[1:])} but x_test images are "
                        f"{shape_text(x_test.shape[1:])}; both splits need one image shape (H x W x C)")
    if x_train.dtype != x_test.dtype:
        raise DataError(f"{path}: x_train is {x_train.dtype} but x_test is {x_test.dtype}; store both splits "
                        f"alike (uint8 pixels 0..255, or float32 model inputs)")
    if class_names is not None:
        for split in ("train", "test"):
            y = arrays[f"y_{split}"]
            if y.max() >= len(class_names):
                raise DataError(f"{path}: y_{split} has labels outside 0..{len(class_names) - 1} (e.g. "
                                f"{y[y >= len(class_names)][0]}); class_names names {len(class_names)} classes")
    notes = _pixel_notes(arrays, x_train.dtype)
    return Dataset(x_train, arrays["y_train"], x_test, arrays["y_test"], source, digest,
                   class_names or (), notes, layout)


def _pixels(x: np.ndarray, name: str, path) -> np.ndarray:
    """uint8 pixels (whole numbers 0..255 of any integer dtype become uint8) or float32 model inputs
    (any float dtype, finite once in float32), C-contiguous."""
    if np.issubdtype(x.dtype, np.floating):
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused below
            x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{path}: {name} contains NaN or infinite pixels (as float32)")
        return x
    if x.dtype != np.uint8 and (not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() > 255):
        raise DataError(f"{path}: {name} has dtype {x.dtype}; expected uint8 pixels 0..255 or float32 inputs")
    return np.ascontiguousarray(x, dtype=np.uint8)


def _labels(y: np.ndarray, name: str, path) -> np.ndarray:
    """int64 class indices 0..MAX_CLASSES-1 (whole-number floats accepted)."""
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise DataError(f"{path}: {name} contains NaN or infinite labels")
        if not np.array_equal(y, np.round(y)):
            raise DataError(f"{path}: {name} has non-integer labels")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {name} has dtype {y.dtype}; expected integer class indices 0..K-1")
    if y.min() < 0:
        raise DataError(f"{path}: {name} has negative labels (e.g. {y[y < 0][0]}); labels are class indices 0..K-1")
    if y.max() >= MAX_CLASSES:
        raise DataError(f"{path}: {name} has label {y.max()}; labels are class indices 0..K-1, at most "
                        f"{MAX_CLASSES:,} classes")
    return y.astype(np.int64)


def _pixel_notes(arrays: dict, dtype) -> tuple[str, ...]:
    if dtype == np.uint8:
        return ()
    low = min(float(arrays[k].min()) for k in ("x_train", "x_test"))
    high = max(float(arrays[k].max()) for k in ("x_train", "x_test"))
    return (f"float pixels taken as they are, as float32, not divided by 255 (range {low:g}..{high:g})",)
