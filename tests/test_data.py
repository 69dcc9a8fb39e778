"""The MNIST-layout loaders: the bundled copy, other .npz files, IDX directories, and every bad-input case.

Colour .npz files, class names and float pixels: test_data_npz.py; image folders: test_data_imagefolder.py;
CIFAR: test_data_cifar.py."""

import gzip
import shutil

import numpy as np
import pytest

from tests.mnist_files import idx_bytes, tiny_arrays, write_idx_dir, write_npz
from twincnn import data
from twincnn.data import DataError


def test_bundled_mnist_is_the_real_one(mnist):
    assert mnist.sha256 == data.BUNDLED_SHA256
    assert mnist.x_train.shape == (60_000, 28, 28, 1) and mnist.x_test.shape == (10_000, 28, 28, 1)
    assert mnist.class_names == tuple("0123456789") and mnist.input_shape == (28, 28, 1)
    assert mnist.layout == ".npz file"
    assert mnist.num_classes == 10 and mnist.pixel_scale == "uint8 / 255" and mnist.notes == ()
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
    assert np.array_equal(ds.x_train, arrays["x_train"][..., None]) and np.array_equal(ds.y_test, arrays["y_test"])
    assert ds.layout == ".npz file" and ds.skipped_files is None


@pytest.mark.parametrize("gz,dotted", [(False, False), (True, False), (False, True), (True, True)])
def test_idx_directory(tmp_path, gz, dotted):
    arrays = tiny_arrays()
    ds = data.load(write_idx_dir(tmp_path / "idx", arrays, gz=gz, dotted=dotted))
    for key in arrays:
        expected = arrays[key][..., None] if key.startswith("x") else arrays[key]
        assert np.array_equal(getattr(ds, key), expected), key
    assert ds.layout == "IDX files (MNIST layout)"


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
    "train and test shapes differ": (lambda a: a.update(x_train=a["x_train"][:, :27, :26]),
                                     "x_train images are 27x26x1 but x_test images are 28x28x1"),
    "test in colour, train not": (lambda a: a.update(x_test=np.stack([a["x_test"]] * 3, -1)),
                                  "x_train images are 28x28x1 but x_test images are 28x28x3"),
    "rank 2 images": (lambda a: a.update(x_train=a["x_train"][:, 0]), "x_train has shape (200, 28)"),
    "rank 5 images": (lambda a: a.update(x_test=a["x_test"][:, None, ..., None]),
                      "x_test has shape (50, 1, 28, 28, 1)"),
    "wrong dtype": (lambda a: a.update(x_train=a["x_train"].astype(np.complex64)), "dtype complex64"),
    "NaN pixels": (_with_float_nan, "NaN or infinite"),
    "count mismatch": (lambda a: a.update(y_train=a["y_train"][:-1]), "200 images but 199 labels"),
    "negative label": (lambda a: a.update(y_test=a["y_test"].astype(np.int64) - 1), "negative labels (e.g. -1)"),
    "float labels": (lambda a: a.update(y_test=a["y_test"] + 0.5), "y_test has non-integer labels"),
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


# -- the loaded Dataset: where it came from, its checksum, and its views -----------------------------
def test_npz_dataset_records_source_and_checksum(tmp_path):
    import hashlib

    path = write_npz(tmp_path / "d.npz", tiny_arrays())
    ds = data.load(path)
    assert ds.source == str(path)
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_idx_dataset_records_source_and_checksum(tmp_path):
    import hashlib

    d = write_idx_dir(tmp_path / "idx", tiny_arrays())
    ds = data.load(d)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    assert ds.source == str(d)
    assert ds.sha256 == hashlib.sha256(b"".join((d / n).read_bytes() for n in names)).hexdigest()


def test_bundled_source_names_the_file():
    assert data.load().source == f"bundled MNIST ({data.bundled_path()})"


def test_sha256_of_large_and_several_files(tmp_path):
    """Files larger than one read, and several files hashed as one stream."""
    import hashlib

    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * (3 * data.HASH_CHUNK_BYTES // 256 + 7))
    small = tmp_path / "small"
    small.write_bytes(b"abc")
    assert data.sha256_of(big) == hashlib.sha256(big.read_bytes()).hexdigest()
    assert data.sha256_of(big, small) == hashlib.sha256(big.read_bytes() + b"abc").hexdigest()
    assert data.sha256_of(tmp_path / "small") == hashlib.sha256(b"abc").hexdigest()


def test_views_of_each_split(tmp_path):
    arrays = tiny_arrays()
    ds = data.load(write_npz(tmp_path / "d.npz", arrays))
    for split in ("train", "test"):
        x = ds.images(split)
        assert x.shape == (len(arrays[f"x_{split}"]), 28, 28, 1) and x.dtype == np.float32
        assert np.array_equal(x[..., 0], arrays[f"x_{split}"].astype(np.float32) / 255)
        assert np.array_equal(ds.labels(split), arrays[f"y_{split}"])
        assert ds.labels(split).dtype == np.int64


def test_subset_keeps_the_first_images(tmp_path):
    arrays = tiny_arrays()
    ds = data.load(write_npz(tmp_path / "d.npz", arrays)).subset(30, 7)
    assert np.array_equal(ds.x_train[..., 0], arrays["x_train"][:30])
    assert np.array_equal(ds.y_train, arrays["y_train"][:30])
    assert np.array_equal(ds.x_test[..., 0], arrays["x_test"][:7]) and np.array_equal(ds.y_test, arrays["y_test"][:7])
    assert ds.source == f"{tmp_path / 'd.npz'} (first 30/7 images)"
    assert ds.sha256 == data.sha256_of(tmp_path / "d.npz")


def test_subset_keeps_class_names_notes_and_layout():
    x = np.zeros((5, 2, 2, 3), np.float32)
    ds = data.Dataset(x, np.array([0, 1, 0, 1, 0]), x, np.array([1, 1, 0, 0, 0]), "src", "abc", ("a", "b", "c"),
                      ("a note",), "some layout", 4)
    sub = ds.subset(2, 3)
    kept = (sub.class_names, sub.notes, sub.layout, sub.skipped_files)
    assert kept == (("a", "b", "c"), ("a note",), "some layout", 4)
    assert (len(sub.y_train), len(sub.y_test), sub.source, sub.sha256) == (2, 3, "src (first 2/3 images)", "abc")
    whole = ds.subset(12_000, 2_000)  # a split smaller than asked: all of it, and the source says how many
    assert (len(whole.y_train), len(whole.y_test), whole.source) == (5, 5, "src (first 5/5 images)")


def test_stats_by_hand():
    x_train = np.zeros((3, 28, 28), np.uint8)
    x_train[0, 0, 0], x_train[2, 5, 5] = 255, 3
    x_test = np.full((2, 28, 28), 7, np.uint8)
    ds = data.Dataset(x_train, np.array([1, 1, 9]), x_test, np.array([0, 4]), "here", "abc")
    mean = 258 / (3 * 784)
    std = np.sqrt(((255 - mean) ** 2 + (3 - mean) ** 2 + (3 * 784 - 2) * mean ** 2) / (3 * 784))
    stats = ds.stats()
    assert stats["train"].pop("pixel_std")[0] == pytest.approx(std, rel=1e-12)
    assert stats == {
        "source": "here", "sha256": "abc", "layout": "", "shape": [28, 28, 1], "channels": 1,
        "pixel_scale": "uint8 / 255", "class_names": list("0123456789"), "notes": [],
        "train": {"images": 3, "labels": 3, "class_counts": [0, 2, 0, 0, 0, 0, 0, 0, 0, 1],
                  "pixel_min": [0], "pixel_max": [255], "pixel_mean": [mean]},
        "test": {"images": 2, "labels": 2, "class_counts": [1, 0, 0, 0, 1, 0, 0, 0, 0, 0],
                 "pixel_min": [7], "pixel_max": [7], "pixel_mean": [7.0], "pixel_std": [0.0]},
    }
    assert type(stats["train"]["pixel_min"][0]) is int and type(stats["train"]["pixel_mean"][0]) is float
    assert type(stats["train"]["images"]) is int and type(stats["channels"]) is int


# -- what other files may hold, and what they may not ------------------------------------------------
def _load_changed(tmp_path, **changes):
    arrays = tiny_arrays()
    arrays.update(changes)
    return data.load(write_npz(tmp_path / "d.npz", arrays))


def test_single_channel_axis_is_optional(tmp_path):
    x = tiny_arrays()["x_train"]
    with_axis = _load_changed(tmp_path, x_train=x[..., None])
    without = _load_changed(tmp_path, x_train=x)
    assert with_axis.x_train.shape == without.x_train.shape == (*x.shape, 1)
    assert np.array_equal(with_axis.x_train[..., 0], x) and np.array_equal(without.x_train[..., 0], x)


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.uint16])
def test_whole_number_pixels_of_other_integer_dtypes_become_uint8(tmp_path, dtype):
    x = tiny_arrays()["x_train"]
    x[0, 0, :2] = (0, 255)  # both ends of the range are allowed
    ds = _load_changed(tmp_path, x_train=x.astype(dtype))
    assert ds.x_train.dtype == np.uint8 and np.array_equal(ds.x_train[..., 0], x) and ds.notes == ()


@pytest.mark.parametrize("value", [-1, 256])
def test_integer_pixels_outside_0_255_are_refused(tmp_path, value):
    x = tiny_arrays()["x_train"].astype(np.int16)
    x[3, 4, 5] = value
    with pytest.raises(DataError) as err:
        _load_changed(tmp_path, x_train=x)
    assert str(err.value) == (f"{tmp_path / 'd.npz'}: x_train has dtype int16; expected uint8 pixels 0..255 "
                              f"or float32 inputs")


def test_whole_float_labels_are_accepted(tmp_path):
    y = tiny_arrays()["y_train"]
    ds = _load_changed(tmp_path, y_train=y.astype(np.float32))
    assert ds.y_train.dtype == np.int64 and np.array_equal(ds.y_train, y)


@pytest.mark.parametrize("value,message", [(np.nan, "y_train contains NaN or infinite labels"),
                                           (np.inf, "y_train contains NaN or infinite labels"),
                                           (1.5, "y_train has non-integer labels")])
def test_bad_float_labels(tmp_path, value, message):
    y = tiny_arrays()["y_train"].astype(np.float64)
    y[4] = value
    with pytest.raises(DataError) as err:
        _load_changed(tmp_path, y_train=y)
    assert str(err.value) == f"{tmp_path / 'd.npz'}: {message}"


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_])
def test_labels_of_other_kinds_are_refused(tmp_path, dtype):
    with pytest.raises(DataError) as err:
        _load_changed(tmp_path, y_test=tiny_arrays()["y_test"].astype(dtype))
    assert str(err.value) == (f"{tmp_path / 'd.npz'}: y_test has dtype {np.dtype(dtype)}; "
                              f"expected integer class indices 0..K-1")


def test_negative_label_names_an_offending_label(tmp_path):
    y = tiny_arrays()["y_test"].astype(np.int64)
    y[:3] = (0, -7, 0)  # zeros around it: only -7 is out of range
    with pytest.raises(DataError) as err:
        _load_changed(tmp_path, y_test=y)
    assert str(err.value) == (f"{tmp_path / 'd.npz'}: y_test has negative labels (e.g. -7); labels are class "
                              f"indices 0..K-1")


def test_label_10_without_class_names_makes_11_classes(tmp_path):
    y = tiny_arrays()["y_test"]
    y[0] = 10
    ds = _load_changed(tmp_path, y_test=y)
    assert ds.num_classes == 11 and ds.class_names == tuple(str(k) for k in range(11))
    assert ds.stats()["train"]["class_counts"][10] == 0 and ds.stats()["test"]["class_counts"][10] == 1


def test_empty_split_is_refused_and_one_image_is_enough(tmp_path):
    with pytest.raises(DataError) as err:
        _load_changed(tmp_path, x_test=np.zeros((0, 28, 28), np.uint8), y_test=np.zeros(0, np.uint8))
    assert str(err.value) == f"{tmp_path / 'd.npz'}: the test split is empty"
    ds = _load_changed(tmp_path, x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    assert len(ds.x_test) == 1


def test_missing_arrays_are_all_named(tmp_path):
    arrays = tiny_arrays()
    del arrays["x_test"], arrays["y_test"]
    path = write_npz(tmp_path / "d.npz", arrays)
    with pytest.raises(DataError) as err:
        data.load(path)
    assert str(err.value) == (f"{path}: missing array(s) x_test, y_test; "
                              f"expected x_train, y_train, x_test, y_test")


def test_unreadable_npz_names_the_error(tmp_path):
    path = tmp_path / "cut.npz"
    path.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(DataError) as err:
        data.load(path)
    assert str(err.value).startswith(f"{path}: not a readable .npz file (BadZipFile: ")


def test_unreadable_npz_message_stays_on_one_line(tmp_path, monkeypatch):
    path = write_npz(tmp_path / "d.npz", tiny_arrays())

    def failing_load(*args, **kwargs):
        raise OSError("first line\nsecond line")

    monkeypatch.setattr(data.np, "load", failing_load)
    with pytest.raises(DataError) as err:
        data.load(path)
    assert str(err.value) == f"{path}: not a readable .npz file (OSError: first line second line)"


def test_a_single_npy_array_is_refused(tmp_path):
    path = tmp_path / "x.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError) as err:
        data.load(path)
    assert str(err.value) == f"{path}: holds one array, not an .npz archive of x_train, y_train, x_test, y_test"


def test_damaged_compressed_member_is_one_line(tmp_path):
    """The archive opens, but x_train's deflate stream is broken: zlib fails only when the array is read."""
    import struct
    import zipfile

    path = write_npz(tmp_path / "d.npz", tiny_arrays())
    with zipfile.ZipFile(path) as z:
        offset = z.getinfo("x_train.npy").header_offset
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[offset + 26: offset + 30])
    raw[offset + 30 + name_len + extra_len] = 0xFF  # deflate block type 3: reserved, invalid
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        data.load(path)
    assert str(err.value).startswith(f"{path}: not a readable .npz file (error: Error -3 while decompressing")


def test_pickled_npz_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x_train=np.array([object()] * 2), y_train=np.zeros(2), x_test=np.zeros(2), y_test=np.zeros(2))
    with pytest.raises(DataError, match=r"not a readable \.npz file \(ValueError: Object arrays cannot be loaded"):
        data.load(path)


def test_missing_bundled_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "bundled_path", lambda: tmp_path / "gone.npz")
    with pytest.raises(DataError) as err:
        data.load()
    assert str(err.value) == f"{tmp_path / 'gone.npz'}: the bundled MNIST is missing; reinstall twincnn"


def test_checksum_mismatch_message(tmp_path, monkeypatch):
    fake = write_npz(tmp_path / "mnist.npz", tiny_arrays())
    monkeypatch.setattr(data, "bundled_path", lambda: fake)
    digest = data.sha256_of(fake)
    with pytest.raises(DataError) as err:
        data.load()
    assert str(err.value) == (f"{fake}: checksum mismatch (sha256 {digest[:12]}..., expected "
                              f"{data.BUNDLED_SHA256[:12]}...); the bundled copy is damaged, reinstall twincnn")


# -- IDX details ----------------------------------------------------------------------------------------
def test_idx_missing_file_message(tmp_path):
    d = write_idx_dir(tmp_path / "idx", tiny_arrays())
    (d / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError) as err:
        data.load(d)
    assert str(err.value) == (f"{d}: missing train-images-idx3-ubyte (or train-images-idx3-ubyte.gz, "
                              f"train-images.idx3-ubyte); an IDX directory needs the four MNIST files")


def test_idx_errors_name_the_file(tmp_path):
    d = write_idx_dir(tmp_path / "idx", tiny_arrays())
    path = d / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(DataError) as err:
        data.load(d)
    assert str(err.value) == (f"{path}: truncated or oversized IDX file: header says (50,) = 50 bytes "
                              f"of data, file has 52")


def test_idx_validation_errors_name_the_directory(tmp_path):
    arrays = tiny_arrays()
    arrays["x_test"] = arrays["x_test"][:, :27]
    d = write_idx_dir(tmp_path / "idx", arrays)
    with pytest.raises(DataError) as err:
        data.load(d)
    assert str(err.value) == (f"{d}: x_train images are 28x28x1 but x_test images are 27x28x1; both splits need "
                              f"one image shape (H x W x C)")


def test_parse_idx_of_an_empty_file():
    """A header with a count of zero and no data is a valid, empty IDX file."""
    assert data.parse_idx(idx_bytes(np.zeros(0, np.uint8), "labels"), "labels", "x").shape == (0,)
    images = data.parse_idx(idx_bytes(np.zeros((0, 28, 28), np.uint8), "images"), "images", "x")
    assert images.shape == (0, 28, 28)


def test_parse_idx_reads_big_endian_dimensions():
    x = np.arange(2 * 3 * 260, dtype=np.uint64).astype(np.uint8).reshape(2, 3, 260)  # 260 needs two bytes
    assert np.array_equal(data.parse_idx(idx_bytes(x, "images"), "images", "x"), x)
