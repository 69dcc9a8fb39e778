"""Image folders: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*``, the layout that Keras's
``image_dataset_from_directory`` and torchvision's ``ImageFolder`` read.

Classes are the sorted folder names under train/ (as both do); files are found at any depth below a class
folder. PNG, JPEG, BMP and GIF (its first frame) are decoded with Pillow, converted as Keras's ``color_mode``
does (``Image.convert("L" / "RGB" / "RGBA")``), on every core, and cached as one .npz per (folder, colour
mode, size) under ``$XDG_CACHE_HOME/twincnn`` (default ``~/.cache/twincnn``), so that a second load reads
one file. Framework-free: numpy, and Pillow imported by the functions that decode.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .data import DataError
from .progress import Progress

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
# Pillow modes of one grey channel (with or without alpha): an image folder of only these is grayscale.
GRAYSCALE_PIL_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"})
SIXTEEN_BIT_PIL_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# Fewer files than this decode in this process: starting worker processes would cost more than it saves.
POOL_MIN_FILES = 1000
CHUNKS_PER_WORKER = 16  # enough chunks to keep every worker busy to the end and the progress bar moving
CACHE_VERSION = "1"  # part of every cache key: a change of what is cached invalidates old entries
CACHE_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "class_names", "notes", "sha256")


@dataclass(frozen=True)
class Listing:
    """The image files of a folder, in the order they are decoded: train, then test, each by class."""
    root: Path
    class_names: tuple[str, ...]
    files: tuple[str, ...]  # paths relative to root, with "/" separators
    labels: np.ndarray  # int64, one per file
    n_train: int  # files[:n_train] are the train split
    skipped_files: int  # files of other extensions (and files outside class folders)
    stamp: str  # a digest of every file's relative name, size and mtime_ns


@dataclass(frozen=True)
class Decoded:
    x_train: np.ndarray  # uint8 (N, H, W, C)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    notes: tuple[str, ...]
    sha256: str  # of the decoded arrays and the class names
    skipped_files: int


def load(root: Path, color_mode: str | None, image_size: tuple[int, int] | None) -> Decoded:
    """The decoded image folder at ``root``, from the cache where its files have not changed since."""
    listing = list_folder(Path(root))
    cache = cache_file(listing.root, color_mode, image_size)
    key = cache_key(listing, color_mode, image_size)
    cached = read_cache(cache, key)
    if cached is not None:
        return _decoded(cached, listing, extra_note=f"decoded images read from the cache {cache}")
    arrays = decode_folder(listing, color_mode, image_size)
    failure = write_cache(cache, key, arrays)
    return _decoded(arrays, listing, extra_note=f"cache not written ({failure})" if failure else None)


def _decoded(arrays: dict, listing: Listing, extra_note: str | None) -> Decoded:
    notes = tuple(str(n) for n in arrays["notes"]) + ((extra_note,) if extra_note else ())
    return Decoded(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                   tuple(str(n) for n in arrays["class_names"]), notes, str(arrays["sha256"]),
                   listing.skipped_files)


# -- finding the files -----------------------------------------------------------------------------------
def list_folder(root: Path) -> Listing:
    """Every image under root/train/<class>/ and root/test/<class>/, checked for the layout's rules."""
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(f"{root}: an image folder needs both train/ and test/, each with a folder per class; "
                            f"{root / split} is missing")
    class_names = tuple(_class_folders(root / "train"))
    if not class_names:
        raise DataError(f"{root / 'train'}: no class folders; put each class's images in train/<class name>/")
    files, labels, stats, skipped = [], [], [], 0
    for split in ("train", "test"):
        folders = _class_folders(root / split)
        for name in folders:
            if name not in class_names:
                raise DataError(f"{root / split / name}: class {name!r} has no folder in {root / 'train'}; every "
                                f"test class needs train images (rename or remove the folder)")
        skipped += sum(1 for entry in os.scandir(root / split) if not entry.is_dir())
        for label, name in enumerate(class_names):
            if name not in folders:
                continue
            images, others = _images_in(root, f"{split}/{name}")
            if not images:
                raise DataError(f"{root / split / name}: an empty class folder (no {', '.join(IMAGE_EXTENSIONS)} "
                                f"files); add images or remove the folder")
            skipped += others
            files += [rel for rel, _ in images]
            stats += [stat for _, stat in images]
            labels += [label] * len(images)
        if split == "train":
            n_train = len(files)
    if n_train == len(files):
        raise DataError(f"{root / 'test'}: no class folders; put each class's test images in test/<class name>/")
    stamp = hashlib.sha256(repr((files, stats, skipped)).encode()).hexdigest()
    return Listing(root.resolve(), class_names, tuple(files), np.array(labels, np.int64), n_train, skipped, stamp)


def _class_folders(split_dir: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    except OSError as exc:
        _unreadable(exc)


def _images_in(root: Path, folder: str) -> tuple[list[tuple[str, tuple[int, int]]], int]:
    """([(relative path, (size, mtime_ns))] of the images at any depth under root/folder, sorted; the
    number of other files)."""
    images, others = [], 0
    for directory, subdirs, names in os.walk(root / folder, onerror=_unreadable):
        subdirs.sort()
        relative = Path(directory).relative_to(root).as_posix()
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                try:
                    stat = os.stat(os.path.join(directory, name))
                except OSError as exc:  # a broken link, a file removed meanwhile
                    _unreadable(exc)
                images.append((f"{relative}/{name}", (stat.st_size, stat.st_mtime_ns)))
            else:
                others += 1
    return images, others


def _unreadable(exc: OSError):
    raise DataError(f"{exc.filename}: cannot be read ({exc.strerror}); fix its permissions or remove it") from None


# -- decoding ----------------------------------------------------------------------------------------------
def decode_chunk(root: str, files: list[str], color_mode: str | None,
                 image_size: tuple[int, int] | None) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """[(uint8 (H, W, C) pixels, (height, width) as stored)] of ``files`` under ``root``. Run in worker
    processes: a top-level function of plain arguments."""
    from PIL import Image

    return [_decode_one(Image, os.path.join(root, rel), color_mode, image_size) for rel in files]


# what Pillow raises for a file that is not a readable image: unknown format, truncated, broken chunks
def _image_errors(Image) -> tuple:
    return (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _decode_one(Image, path: str, color_mode, image_size) -> tuple[np.ndarray, tuple[int, int]]:
    """Pixels converted as Keras's color_mode (None: grayscale images to "L", others to "RGB"), resized
    with Pillow's bilinear filter to ``image_size`` where given."""
    try:
        with Image.open(path) as img:
            img.load()
            stored = (img.height, img.width)
            if img.mode in SIXTEEN_BIT_PIL_MODES:  # Pillow's convert("L") clips at 255; keep the high byte
                img = Image.fromarray((np.asarray(img).clip(0, 65535) >> 8).astype(np.uint8))
            mode = PIL_MODES[color_mode] if color_mode else ("L" if img.mode in GRAYSCALE_PIL_MODES else "RGB")
            img = img.convert(mode)
            if image_size is not None and stored != tuple(image_size):
                img = img.resize((image_size[1], image_size[0]), Image.BILINEAR)
            pixels = np.asarray(img)
    except _image_errors(Image) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc}); replace or remove "
                        f"the file".replace("\n", " ")) from None
    return (pixels[..., None] if pixels.ndim == 2 else pixels), stored


def worker_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def decode_folder(listing: Listing, color_mode: str | None, image_size: tuple[int, int] | None) -> dict:
    """The cache's arrays for ``listing``: decoded on every core, checked for one image size."""
    decoded = _decode_files(listing, color_mode, image_size)
    pixels = [p for p, _ in decoded]
    notes = [f"decoded from {_count(len(pixels), 'file')}"
             + (f"; {_count(listing.skipped_files, 'other file')} skipped (not {', '.join(IMAGE_EXTENSIONS)})"
                if listing.skipped_files else "")]
    if image_size is None:
        _check_one_size(listing, [p.shape[:2] for p in pixels])
    else:
        resized = sum(1 for _, stored in decoded if stored != tuple(image_size))
        notes.append(f"images resized to {image_size[0]}x{image_size[1]} (Pillow bilinear): {resized:,} of "
                     f"{len(pixels):,} had another size")
    pixels, mode_note = _one_color_mode(pixels, color_mode)
    notes.append(mode_note)
    x = np.stack(pixels)
    arrays = {"x_train": x[:listing.n_train], "y_train": listing.labels[:listing.n_train],
              "x_test": x[listing.n_train:], "y_test": listing.labels[listing.n_train:]}
    return {**arrays, "class_names": np.array(listing.class_names, dtype=str), "notes": np.array(notes, dtype=str),
            "sha256": np.array(arrays_digest(arrays, listing.class_names))}


def _decode_files(listing: Listing, color_mode, image_size) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Decode every file, in chunks, in a pool of worker processes where there are many; with a progress
    bar on a terminal."""
    files, workers = listing.files, worker_count()
    per_chunk = max(1, math.ceil(len(files) / (workers * CHUNKS_PER_WORKER)))
    chunks = [list(files[i:i + per_chunk]) for i in range(0, len(files), per_chunk)]
    progress = Progress(f"decoding {listing.root.name}", len(files))  # draws on a terminal only (progress.tty)
    args = (repeat(str(listing.root)), chunks, repeat(color_mode), repeat(image_size))
    if len(files) < POOL_MIN_FILES or workers < 2:
        decoded = _collect(map(decode_chunk, *args), progress)
    else:
        # spawn: the caller may hold framework threads, which a forked child would inherit mid-lock
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        try:
            decoded = _collect(pool.map(decode_chunk, *args), progress)
        finally:
            pool.shutdown(cancel_futures=True)
    if progress.tty:  # elsewhere (a log, a pipe) the bar would be one more line: the notes say it instead
        progress.close()
    return decoded


def _collect(results, progress: Progress) -> list:
    decoded = []
    for chunk in results:
        decoded += chunk
        progress.update(len(decoded))
    return decoded


def _check_one_size(listing: Listing, sizes: list[tuple[int, int]]) -> None:
    for rel, size in zip(listing.files, sizes):
        if size != sizes[0]:
            raise DataError(f"{listing.root / rel}: {size[0]}x{size[1]} pixels (HxW), but "
                            f"{listing.root / listing.files[0]} is {sizes[0][0]}x{sizes[0][1]}; images of several "
                            f"sizes need --image-size H,W (image_size=(H, W)) to resize them all")


def _one_color_mode(pixels: list[np.ndarray], color_mode: str | None) -> tuple[list[np.ndarray], str]:
    """Every image in the same channels, and the note that says which. Without a colour mode the images
    were decoded as grayscale (1 channel) where they are, else RGB: grayscale where all are, else the grey
    ones repeated in R, G and B (what Pillow's convert("RGB") does)."""
    if color_mode is not None:
        return pixels, f"colour mode {color_mode} (as asked)"
    grey = sum(1 for p in pixels if p.shape[-1] == 1)
    if grey == len(pixels):
        return pixels, "colour mode grayscale (every image is grayscale)"
    if grey == 0:
        return pixels, "colour mode rgb (the images are in colour)"
    pixels = [np.repeat(p, 3, axis=-1) if p.shape[-1] == 1 else p for p in pixels]
    return pixels, (f"colour mode rgb (not every image is grayscale; {_count(grey, 'grayscale image')} repeated "
                    f"in R, G, B)")


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def arrays_digest(arrays: dict, class_names) -> str:
    """SHA-256 of the decoded arrays (dtype, shape and bytes of each, in the order of ``arrays``) and the
    class names: the same images decoded the same way have the same digest, whatever the files' names."""
    digest = hashlib.sha256()
    for name, array in arrays.items():
        digest.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
        digest.update(np.ascontiguousarray(array).data)
    digest.update("\n".join(class_names).encode())
    return digest.hexdigest()


# -- the cache ------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "twincnn"


def cache_file(root: Path, color_mode, image_size) -> Path:
    """One file per (folder, colour mode, size): a new decode of the same folder replaces the old one."""
    name = hashlib.sha256(repr((str(root), color_mode, image_size)).encode()).hexdigest()[:24]
    return cache_dir() / f"imagefolder-{name}.npz"


def cache_key(listing: Listing, color_mode, image_size) -> str:
    return hashlib.sha256(repr((CACHE_VERSION, listing.stamp, color_mode, image_size)).encode()).hexdigest()


# a cache file that is missing, damaged or written by another version is decoded again
CACHE_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


def read_cache(path: Path, key: str) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            return {name: npz[name] for name in CACHE_ARRAYS}
    except CACHE_READ_ERRORS:
        return None


def write_cache(path: Path, key: str, arrays: dict) -> str | None:
    """Write atomically (a temporary file, then os.replace), so that a reader never sees half a file.
    Returns None, or why it could not be written: a read-only home must not fail the load."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, key=np.array(key), **arrays)
        os.replace(tmp, path)
        return None
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        return f"{type(exc).__name__}: {exc}".replace("\n", " ")
