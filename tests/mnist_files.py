"""Small datasets written by tests: MNIST-layout .npz files and IDX directories (raw or gzipped), image
folders, and CIFAR-10/100 directories in the binary and the Python version (pickled as Python 2 did)."""

import gzip
import pickle
import struct

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


def write_image_folder(root, splits, ext=".png"):
    """root/<split>/<class>/<i><ext> for ``splits`` {split: {class: [uint8 (H, W) or (H, W, C) arrays]}}."""
    from PIL import Image

    for split, classes in splits.items():
        for name, images in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, pixels in enumerate(images):
                pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
                Image.fromarray(pixels).save(folder / f"{i}{ext}")
    return root


def random_images(n, shape, seed=0):
    return list(np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8))


# -- CIFAR ---------------------------------------------------------------------------------------------
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_RECONSTRUCT = np.zeros(0).__reduce__()[0]


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote the CIFAR batches: protocol 2, every bytes and (ASCII) str object a
    Python 2 str (SHORT_BINSTRING/BINSTRING), numpy's reconstructor named numpy.core.multiarray._reconstruct."""
    dispatch = dict(pickle._Pickler.dispatch)

    def write_py2_str(self, raw):
        n = len(raw)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + raw if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + raw)

    def save_py2_str(self, obj):
        self.write_py2_str(obj)
        self.memoize(obj)

    def save_str_as_py2_str(self, obj):  # Python 2's str is bytes: numpy's '|' and 'u1' were written so
        self.write_py2_str(obj.encode("ascii"))
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_str_as_py2_str

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_pickle(path, obj):
    with open(path, "wb") as fh:
        Py2Pickler(fh, protocol=2).dump(obj)
    return path


def cifar_rows(x):
    """(N, 32, 32, 3) images as CIFAR stores them: rows of 3,072 bytes, all red, then green, then blue."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), -1))


def cifar_arrays(n_train=10, n_test=4, classes=10, seed=0):
    """Five train batches' worth (n_train images, a multiple of 5) and a test batch of random images."""
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
            "y_train": rng.integers(0, classes, n_train),
            "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
            "y_test": rng.integers(0, classes, n_test)}


def write_cifar10(directory, arrays, version, names=CIFAR10_NAMES):
    """A CIFAR-10 directory as extracted: cifar-10-batches-bin (``version`` "binary") or -py ("python")."""
    directory.mkdir(parents=True, exist_ok=True)
    x_parts = np.array_split(arrays["x_train"], 5)
    y_parts = np.array_split(arrays["y_train"], 5)
    batches = [(f"data_batch_{i + 1}", x, y) for i, (x, y) in enumerate(zip(x_parts, y_parts))]
    batches.append(("test_batch", arrays["x_test"], arrays["y_test"]))
    for name, x, y in batches:
        if version == "binary":
            records = np.concatenate([np.asarray(y, np.uint8)[:, None], cifar_rows(x)], axis=1)
            (directory / f"{name}.bin").write_bytes(records.tobytes())
        else:
            py2_pickle(directory / name, {b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                                          b"data": cifar_rows(x),
                                          b"filenames": [b"f%d.png" % i for i in range(len(y))]})
    if version == "binary":
        (directory / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    else:
        py2_pickle(directory / "batches.meta", {b"num_cases_per_batch": len(x_parts[0]),
                                                b"label_names": [n.encode() for n in names], b"num_vis": 3072})
    return directory


def write_cifar100(directory, arrays, version, names, coarse=None):
    """A CIFAR-100 directory as extracted: train/test (Python version: fine and coarse labels) and the names."""
    directory.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x, fine = arrays[f"x_{split}"], np.asarray(arrays[f"y_{split}"])
        coarse_labels = (fine // 5) if coarse is None else coarse[split]
        if version == "binary":
            records = np.concatenate([np.asarray(coarse_labels, np.uint8)[:, None], np.asarray(fine, np.uint8)[:, None],
                                      cifar_rows(x)], axis=1)
            (directory / f"{split}.bin").write_bytes(records.tobytes())
        else:
            py2_pickle(directory / split, {b"filenames": [b"f%d.png" % i for i in range(len(fine))],
                                           b"batch_label": split.encode(), b"fine_labels": [int(v) for v in fine],
                                           b"coarse_labels": [int(v) for v in coarse_labels], b"data": cifar_rows(x)})
    if version == "binary":
        (directory / "fine_label_names.txt").write_text("\n".join(names) + "\n")
        (directory / "coarse_label_names.txt").write_text("\n".join(f"group{i}" for i in range(20)) + "\n")
    else:
        py2_pickle(directory / "meta", {b"fine_label_names": [n.encode() for n in names],
                                        b"coarse_label_names": [b"group%d" % i for i in range(20)]})
    return directory
