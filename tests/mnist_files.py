"""Small MNIST-layout datasets written by tests: .npz files and IDX directories (raw or gzipped)."""

import gzip

import numpy as np

IDX_NAMES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def tiny_arrays(n_train=200, n_test=50, seed=0):
    """Synthetic digits: class k lights up row band k, so a CNN learns it quickly."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 255
        return x, y

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def idx_bytes(array, kind):
    magic = 2051 if kind == "images" else 2049
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_idx_dir(directory, arrays, gz=False, dotted=False):
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        raw = idx_bytes(arrays[key], "images" if key.startswith("x") else "labels")
        path = directory / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)
    return directory


def write_npz(path, arrays):
    np.savez_compressed(path, **arrays)
    return path
