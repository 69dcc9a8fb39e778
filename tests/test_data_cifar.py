"""CIFAR-10 and CIFAR-100 directories as extracted, binary and Python version, written here in the real formats
(the Python version as Python 2 pickled it); and pickles that must be refused without running anything."""

import hashlib
import os
import pickle

import numpy as np
import pytest

from tests.helpers import data_refusal
from tests.mnist_files import (CIFAR10_NAMES, cifar_arrays, cifar_rows, py2_pickle, write_cifar10, write_cifar100,
                               write_image_folder)
from twincnn import cifar, data

FINE_NAMES = [f"class{k:02d}" for k in range(100)]
TRAIN_BATCHES = {"binary": [f"data_batch_{i}.bin" for i in range(1, 6)],
                 "python": [f"data_batch_{i}" for i in range(1, 6)]}
TEST_AND_META = {"binary": ["test_batch.bin", "batches.meta.txt"], "python": ["test_batch", "batches.meta"]}



def refusal(path) -> str:
    return data_refusal(path)


@pytest.mark.parametrize("version", ["binary", "python"])
def test_cifar10(tmp_path, version):
    arrays = cifar_arrays()
    d = write_cifar10(tmp_path / f"cifar-10-batches-{version[:3]}", arrays, version)
    ds = data.load(d)
    for key, value in arrays.items():
        assert np.array_equal(getattr(ds, key), value), key
    assert ds.class_names == tuple(CIFAR10_NAMES) and ds.input_shape == (32, 32, 3) and ds.pixel_scale == "uint8 / 255"
    assert ds.layout == f"CIFAR-10 ({'binary' if version == 'binary' else 'Python'} version)" and ds.source == str(d)
    files = TRAIN_BATCHES[version] + TEST_AND_META[version]
    assert ds.sha256 == hashlib.sha256(b"".join((d / name).read_bytes() for name in files)).hexdigest()


@pytest.mark.parametrize("version", ["binary", "python"])
def test_cifar100_takes_the_fine_labels(tmp_path, version):
    arrays = cifar_arrays(n_train=6, n_test=3, classes=100, seed=4)
    d = write_cifar100(tmp_path / "cifar-100", arrays, version, FINE_NAMES)
    ds = data.load(d)
    for key, value in arrays.items():
        assert np.array_equal(getattr(ds, key), value), key
    assert not np.array_equal(arrays["y_train"] // 5, arrays["y_train"])  # the coarse labels differ
    assert ds.class_names == tuple(FINE_NAMES) and ds.num_classes == 100
    assert ds.layout == f"CIFAR-100 ({'binary' if version == 'binary' else 'Python'} version)"
    files = ["train.bin", "test.bin", "fine_label_names.txt"] if version == "binary" else ["train", "test", "meta"]
    assert ds.sha256 == hashlib.sha256(b"".join((d / name).read_bytes() for name in files)).hexdigest()


@pytest.mark.parametrize("version", ["binary", "python"])
def test_rows_are_channel_major(tmp_path, version):
    """A CIFAR row is the 1,024 red bytes, then green, then blue, each row by row: byte c*1024 + 32*y + x."""
    arrays = cifar_arrays(n_train=5, n_test=1)
    d = write_cifar10(tmp_path / "c", arrays, version)
    row = np.zeros(3072, np.uint8)
    row[1 * 1024 + 32 * 3 + 7] = 200  # green, y 3, x 7
    row[2 * 1024 + 32 * 30 + 1] = 100  # blue, y 30, x 1
    if version == "binary":
        (d / "test_batch.bin").write_bytes(bytes([4]) + row.tobytes())
    else:
        py2_pickle(d / "test_batch", {b"labels": [4], b"data": row[None]})
    x = data.load(d).x_test[0]
    assert x[3, 7, 1] == 200 and x[30, 1, 2] == 100 and int(x.sum()) == 300


def test_cifar_rows_helper_is_the_inverse_of_the_loader():
    x = cifar_arrays()["x_train"]
    assert np.array_equal(cifar._channels_last(cifar_rows(x)), x)


def test_python_version_beside_an_image_folder_name(tmp_path, monkeypatch):
    """CIFAR-100's Python version has train and test *files*; an image folder has train/ and test/ folders."""
    d = write_cifar100(tmp_path / "c", cifar_arrays(classes=100), "python", FINE_NAMES)
    assert data.load(d).layout == "CIFAR-100 (Python version)"
    shape = (4, 4, 3)
    two = {"a": [np.zeros(shape, np.uint8)], "b": [np.ones(shape, np.uint8)]}
    folder = write_image_folder(tmp_path / "f", {"train": two, "test": two})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.load(folder).layout.startswith("image folder")


@pytest.mark.parametrize("version,missing", [("binary", "data_batch_3.bin"), ("binary", "batches.meta.txt"),
                                             ("python", "data_batch_5"), ("python", "batches.meta")])
def test_a_missing_cifar10_file(tmp_path, version, missing):
    d = write_cifar10(tmp_path / "c", cifar_arrays(), version)
    (d / missing).unlink()
    files = ", ".join(TRAIN_BATCHES[version] + TEST_AND_META[version])
    name = "binary" if version == "binary" else "Python"
    assert refusal(d) == (f"{d}: missing {missing}; the CIFAR-10 ({name} version) holds {files} (pass the "
                          f"directory as extracted)")


def test_a_missing_cifar100_file(tmp_path):
    d = write_cifar100(tmp_path / "c", cifar_arrays(classes=100), "binary", FINE_NAMES)
    (d / "train.bin").unlink()
    assert refusal(d) == (f"{d}: missing train.bin; the CIFAR-100 (binary version) holds train.bin, test.bin, "
                          f"fine_label_names.txt (pass the directory as extracted)")


@pytest.mark.parametrize("cut", [1, 3072])
def test_a_truncated_binary_batch(tmp_path, cut):
    d = write_cifar10(tmp_path / "c", cifar_arrays(), "binary")
    path = d / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-cut])
    size = 2 * 3073 - cut
    assert refusal(d) == (f"{path}: {size:,} bytes is not a whole number of 3,073-byte records of the CIFAR-10 "
                          f"(binary version); the file is truncated or not a CIFAR batch")


def test_an_empty_binary_batch(tmp_path):
    d = write_cifar100(tmp_path / "c", cifar_arrays(classes=100), "binary", FINE_NAMES)
    (d / "test.bin").write_bytes(b"")
    assert refusal(d).startswith(f"{d / 'test.bin'}: 0 bytes is not a whole number of 3,074-byte records")


def test_labels_beyond_the_class_names(tmp_path):
    d = write_cifar10(tmp_path / "c", cifar_arrays(), "binary", names=CIFAR10_NAMES[:5])
    y = np.concatenate([np.frombuffer((d / f).read_bytes(), np.uint8).reshape(-1, 3073)[:, 0]
                        for f in TRAIN_BATCHES["binary"]])
    bad = y[y >= 5][0]
    assert refusal(d) == f"{d}: y_train has labels outside 0..4 (e.g. {bad}); class_names names 5 classes"


def test_folder_options_are_refused_for_cifar(tmp_path):
    d = write_cifar10(tmp_path / "c", cifar_arrays(), "binary")
    assert data_refusal(d, image_size=(32, 32)) == (
        f"{d}: the colour mode and image size (--color-mode, --image-size) apply to image folders only, not to a "
        f"CIFAR-10 (binary version) directory; leave them out")


def test_blank_lines_in_the_names_file_are_not_classes(tmp_path):
    d = write_cifar10(tmp_path / "c", cifar_arrays(), "binary")
    (d / "batches.meta.txt").write_text("\n".join(f"  {n} " for n in CIFAR10_NAMES) + "\n\n\n")
    assert data.load(d).class_names == tuple(CIFAR10_NAMES)


@pytest.mark.parametrize("content,problem", [(b"", "no class names"),
                                             (b"\xff\xfe\n", "not a text file of class names")])
def test_a_bad_names_file(tmp_path, content, problem):
    d = write_cifar10(tmp_path / "c", cifar_arrays(), "binary")
    (d / "batches.meta.txt").write_bytes(content)
    assert refusal(d) == f"{d / 'batches.meta.txt'}: {problem}; use the file from the CIFAR archive"


# -- the Python version's batches: plain data only ----------------------------------------------------------
def _python_dir(tmp_path):
    return write_cifar10(tmp_path / "c", cifar_arrays(), "python")


class RunsCode:
    """Unpickled, it calls os.system: the pickle must be refused before anything is called."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Evaluates:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("payload,name", [(RunsCode, f"{os.system.__module__}.system"),
                                          (Evaluates, "__builtin__.eval")])  # as Python 2 named builtins
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, payload, name):
    d = _python_dir(tmp_path)
    marker = tmp_path / "it ran"
    batch = d / "data_batch_2"
    py2_pickle(batch, {b"data": payload(marker), b"labels": [0]})
    assert refusal(d) == (f"{batch}: refused to unpickle: it holds {name}, and a CIFAR batch holds only plain data "
                          f"(dicts, lists, bytes, numbers, numeric arrays); use the files from the CIFAR archive")
    assert not marker.exists()


def test_the_payload_would_have_run(tmp_path):
    """The payload is real: plain pickle.load runs it (so the test above can fail)."""
    marker = tmp_path / "it ran"
    with open(tmp_path / "p", "wb") as fh:
        pickle.dump(Evaluates(marker), fh, protocol=2)
    with open(tmp_path / "p", "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def _refused_batch(tmp_path, obj, protocol=2) -> str:
    d = _python_dir(tmp_path)
    if protocol == 2:
        py2_pickle(d / "test_batch", obj)
    else:  # -2: as Python 3 pickles at protocol 2
        (d / "test_batch").write_bytes(pickle.dumps(obj, protocol=abs(protocol)))
    return refusal(d).removeprefix(f"{d / 'test_batch'}: ")


def test_a_python3_protocol_2_pickle_of_bytes_is_refused(tmp_path):
    """Python 3 writes bytes at protocol 2 as _codecs.encode(str, "latin1"): not what the CIFAR page's files hold."""
    message = _refused_batch(tmp_path, {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, protocol=-2)
    assert message.startswith("refused to unpickle: it holds _codecs.encode, and a CIFAR batch")


def test_an_object_array_is_refused(tmp_path):
    message = _refused_batch(tmp_path, {b"data": np.array([b"x", 1], dtype=object), b"labels": [0]})
    assert message.startswith("refused to unpickle: it holds an array of dtype object, and a CIFAR batch")


def test_a_structured_array_is_refused(tmp_path):
    message = _refused_batch(tmp_path, {b"data": np.zeros(2, dtype=[("a", "u1")]), b"labels": [0]})
    assert message.startswith("refused to unpickle: it holds an array of dtype |V1, and a CIFAR batch")


def test_a_set_built_without_globals_is_refused(tmp_path):
    message = _refused_batch(tmp_path, {b"data": {1, 2}, b"labels": [0]}, protocol=4)
    assert message.startswith("refused to unpickle: it holds a set, and a CIFAR batch")


def test_a_dtype_built_from_anything_but_a_name_is_refused(tmp_path):
    d = _python_dir(tmp_path)
    (d / "test_batch").write_bytes(b"\x80\x02cnumpy\ndtype\n]\x85R.")  # numpy.dtype([])
    assert refusal(d).startswith(f"{d / 'test_batch'}: refused to unpickle: it holds a dtype built from a list")


def test_deep_nesting_is_refused(tmp_path):
    deep = [[[[[b"x"]]]]]
    assert _refused_batch(tmp_path, deep).startswith("refused to unpickle: it holds containers nested deeper than 4")
    assert cifar._check_plain([[[[b"x"]]]], 0) is None  # four levels are fine


def test_reconstructing_anything_but_an_ndarray_is_refused(tmp_path):
    crafted = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R.")
    d = _python_dir(tmp_path)
    (d / "test_batch").write_bytes(crafted)
    assert refusal(d).startswith(f"{d / 'test_batch'}: refused to unpickle: it holds an array of class function")


def test_calling_the_ndarray_token_is_refused(tmp_path):
    d = _python_dir(tmp_path)
    (d / "test_batch").write_bytes(b"\x80\x02cnumpy\nndarray\nK\x02\x85R.")
    assert refusal(d) == (f"{d / 'test_batch'}: not a readable CIFAR batch (TypeError: 'object' object is not "
                          f"callable); use the files from the CIFAR archive")


@pytest.mark.parametrize("cut", [1, 200])
def test_a_truncated_pickle(tmp_path, cut):
    d = _python_dir(tmp_path)
    path = d / "data_batch_1"
    path.write_bytes(path.read_bytes()[:-cut])
    assert refusal(d).startswith(f"{path}: not a readable CIFAR batch (")


def test_a_batch_that_is_not_a_dict(tmp_path):
    d = _python_dir(tmp_path)
    py2_pickle(d / "data_batch_4", [b"data", b"labels"])
    assert refusal(d) == (f"{d / 'data_batch_4'}: not a batch of the CIFAR-10 (Python version) (a dict of b'data' "
                          f"and b'labels'); pass the directory as extracted")


def test_a_cifar100_batch_without_fine_labels(tmp_path):
    d = write_cifar100(tmp_path / "c", cifar_arrays(classes=100), "python", FINE_NAMES)
    py2_pickle(d / "test", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    assert refusal(d) == (f"{d / 'test'}: not a batch of the CIFAR-100 (Python version) (a dict of b'data' and "
                          f"b'fine_labels'); pass the directory as extracted")


@pytest.mark.parametrize("pixels,shown", [(np.zeros((2, 3071), np.uint8), "(2, 3071)"),
                                          (np.zeros((2, 3072), np.int16), "(2, 3072)"),
                                          (np.zeros(3072, np.uint8), "(3072,)"),
                                          ([0] * 3072, "list")])
def test_pixels_that_are_not_cifar_rows(tmp_path, pixels, shown):
    d = _python_dir(tmp_path)
    py2_pickle(d / "test_batch", {b"data": pixels, b"labels": [0, 1]})
    assert refusal(d) == (f"{d / 'test_batch'}: b'data' is {shown}, not rows of 3,072 uint8 pixels; use the batch "
                          f"from the CIFAR archive")


@pytest.mark.parametrize("labels", [[0], [0, 1, 2], [b"a", b"b"], [[0], [1]]])
def test_labels_that_are_not_one_per_image(tmp_path, labels):
    d = _python_dir(tmp_path)
    py2_pickle(d / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": labels})
    assert refusal(d) == (f"{d / 'test_batch'}: b'labels' is not one integer label per image (2 images); use the "
                          f"batch from the CIFAR archive")


@pytest.mark.parametrize("meta", [{b"label_names": []}, {b"names": [b"a"]}, [b"a"], {b"label_names": [b"a", 3]}])
def test_a_meta_file_without_names(tmp_path, meta):
    d = _python_dir(tmp_path)
    py2_pickle(d / "batches.meta", meta)
    assert refusal(d) == (f"{d / 'batches.meta'}: no list of class names under b'label_names'; use the file from "
                          f"the CIFAR archive")


def test_meta_names_that_are_not_utf8(tmp_path):
    d = _python_dir(tmp_path)
    py2_pickle(d / "batches.meta", {b"label_names": [b"\xff"] * 10})
    assert refusal(d) == (f"{d / 'batches.meta'}: class names that are not UTF-8; use the file from the CIFAR archive")


def test_safe_globals_are_the_numpy_ones_only():
    assert set(cifar.SAFE_GLOBALS) == {("numpy.core.multiarray", "_reconstruct"),
                                       ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                                       ("numpy", "dtype")}
