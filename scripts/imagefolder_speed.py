"""How long twincnn takes to load an image folder of CIFAR's size: 50,000 random 32x32 RGB PNGs (45,000 train,
5,000 test, in 10 classes), first with an empty cache (every file decoded) and then from the cache.

    .venv/bin/python scripts/imagefolder_speed.py [--keep DIR]

Everything is written under a temporary directory (the folder and its cache), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SPLITS = {"train": 45_000, "test": 5_000}
CLASSES = 10
SIZE = (32, 32, 3)


def write_class(args) -> None:
    """One class folder of random PNGs (run in worker processes)."""
    from PIL import Image

    folder, count, seed = args
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, SIZE, dtype=np.uint8)).save(folder / f"{i:05d}.png")


def make_folder(root: Path) -> None:
    jobs = [(root / split / f"class{k}", count // CLASSES, seed)
            for seed, (split, count, k) in enumerate((s, c, k) for s, c in SPLITS.items() for k in range(CLASSES))]
    with ProcessPoolExecutor() as pool:
        list(pool.map(write_class, jobs))


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())


def timed_load(root: Path):
    from twincnn import data

    start = time.perf_counter()
    ds = data.load(root)
    return time.perf_counter() - start, ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the folder here and keep it (default: a temporary one)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="twincnn-speed-"))
    root = base / "folder"
    os.environ["XDG_CACHE_HOME"] = str(base / "cache")
    try:
        start = time.perf_counter()
        make_folder(root)
        print(f"wrote {sum(SPLITS.values()):,} PNGs in {time.perf_counter() - start:.1f} s")
        cold, ds = timed_load(root)
        print(f"first load (cold cache, decoded on {os.cpu_count()} cores): {cold:.1f} s; "
              f"{ds.x_train.shape} + {ds.x_test.shape}")
        warm, _ = timed_load(root)
        print(f"second load (cached): {warm:.2f} s")
        print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs")
    finally:
        if args.keep is None:
            shutil.rmtree(base)


if __name__ == "__main__":
    main()
