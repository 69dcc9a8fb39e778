"""The MNIST loader: the bundled copy, other .npz files, IDX directories, and every bad-input case."""

import gzip
import shutil

import numpy as np
import pytest

from tests.mnist_files import idx_bytes, tiny_arrays, write_idx_dir, write_npz
from twincnn import data
from twincnn.data import DataError


def test_bundled_mnist_is_the_real_one(mnist):
    assert mnist.sha256 == data.BUNDLED_SHA256
    assert mnist.x_train.shape == (60_000, 28, 28) and mnist.x_test.shape == (10_000, 28, 28)
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.x_train.mean() == pytest.approx(33.318, abs=1e-3)


def test_images_are_canonical_float_input(mnist):
    x = mnist.images("test")
    assert x.shape == (10_000, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0


def test_other_npz(tmp_path):
    arrays = tiny_arrays()
    ds = data.load(write_npz(tmp_path / "d.npz", arrays))
    assert np.array_equal(ds.x_train, arrays["x_train"]) and np.array_equal(ds.y_test, arrays["y_test"])


@pytest.mark.parametrize("gz,dotted", [(False, False), (True, False), (False, True), (True, True)])
def test_idx_directory(tmp_path, gz, dotted):
    arrays = tiny_arrays()
    ds = data.load(write_idx_dir(tmp_path / "idx", arrays, gz=gz, dotted=dotted))
    for key in arrays:
        assert np.array_equal(getattr(ds, key), arrays[key]), key


def test_idx_and_npz_of_same_data_agree(tmp_path):
    arrays = tiny_arrays()
    a = data.load(write_npz(tmp_path / "d.npz", arrays))
    b = data.load(write_idx_dir(tmp_path / "idx", arrays))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_train, b.y_train)


def _npz_case(tmp_path, change):
    arrays = tiny_arrays()
    change(arrays)
    return write_npz(tmp_path / "bad.npz", arrays)


def _with_float_nan(a):
    a["x_train"] = a["x_train"].astype(np.float32)
    a["x_train"][0, 0, 0] = np.nan


NPZ_CASES = {
    "missing array": (lambda a: a.pop("y_test"), "missing array(s) y_test"),
    "wrong image shape": (lambda a: a.update(x_train=a["x_train"][:, :27, :27]), "expected (N, 28, 28)"),
    "three channels": (lambda a: a.update(x_test=np.stack([a["x_test"]] * 3, -1)), "single-channel"),
    "wrong dtype": (lambda a: a.update(x_train=a["x_train"].astype(np.complex64)), "dtype complex64"),
    "NaN pixels": (_with_float_nan, "NaN or infinite"),
    "count mismatch": (lambda a: a.update(y_train=a["y_train"][:-1]), "200 images but 199 labels"),
    "label 10": (lambda a: a["y_test"].__setitem__(0, 10), "labels outside 0..9"),
    "negative label": (lambda a: a.update(y_test=a["y_test"].astype(np.int64) - 1), "labels outside 0..9"),
    "2d labels": (lambda a: a.update(y_train=a["y_train"][:, None]), "expected (N,) labels"),
}


@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz(tmp_path, case):
    change, message = NPZ_CASES[case]
    path = _npz_case(tmp_path, change)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        data.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        data.load(tmp_path / "nope.npz")


def test_not_an_npz(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello, not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        data.load(path)


def test_truncated_npz(tmp_path):
    path = write_npz(tmp_path / "d.npz", tiny_arrays())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="not a readable .npz"):
        data.load(path)


def test_idx_missing_file(tmp_path):
    d = write_idx_dir(tmp_path / "idx", tiny_arrays())
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        data.load(d)


def test_idx_bad_magic(tmp_path):
    d = write_idx_dir(tmp_path / "idx", tiny_arrays())
    (d / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((5, 28, 28), np.uint8), "images"))
    with pytest.raises(DataError, match="bad IDX magic number 2051"):
        data.load(d)


def test_idx_truncated(tmp_path):
    d = write_idx_dir(tmp_path / "idx", tiny_arrays())
    path = d / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        data.load(d)


def test_idx_truncated_header(tmp_path):
    d = write_idx_dir(tmp_path / "idx", tiny_arrays())
    (d / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match="truncated IDX file"):
        data.load(d)


def test_idx_bad_gzip(tmp_path):
    d = write_idx_dir(tmp_path / "idx", tiny_arrays(), gz=True)
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(DataError, match="cannot decompress"):
        data.load(d)


def test_idx_count_mismatch(tmp_path):
    arrays = tiny_arrays()
    arrays["y_test"] = arrays["y_test"][:-3]
    with pytest.raises(DataError, match="50 images but 47 labels"):
        data.load(write_idx_dir(tmp_path / "idx", arrays))


def test_bundled_checksum_mismatch(tmp_path, monkeypatch):
    fake = tmp_path / "data" / "mnist.npz"
    fake.parent.mkdir()
    shutil.copy(write_npz(tmp_path / "d.npz", tiny_arrays()), fake)
    monkeypatch.setattr(data, "bundled_path", lambda: fake)
    with pytest.raises(DataError, match="checksum mismatch"):
        data.load()
