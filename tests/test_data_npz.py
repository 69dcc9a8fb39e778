""".npz files of any image size, channel count and class count: class names, float pixels, per-channel
statistics, and the one-line refusals. The MNIST-layout cases are in test_data.py."""

import numpy as np
import pytest

from tests.helpers import data_refusal
from tests.mnist_files import tiny_arrays, write_idx_dir, write_npz
from twincnn import data

NAMES = ["cat", "dog", "fox"]


def colour_arrays(n_train=12, n_test=5, size=(6, 5), channels=3, seed=1):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, *size, channels), dtype=np.uint8),
            "y_train": np.arange(n_train) % 3,
            "x_test": rng.integers(0, 256, (n_test, *size, channels), dtype=np.uint8),
            "y_test": np.array([2, 0, 2, 1, 2])[:n_test]}


def write(tmp_path, arrays, class_names=None):
    extra = {} if class_names is None else {"class_names": np.asarray(class_names)}
    return write_npz(tmp_path / "d.npz", {**arrays, **extra})



def test_colour_npz_with_class_names(tmp_path):
    arrays = colour_arrays()
    ds = data.load(write(tmp_path, arrays, NAMES))
    assert ds.class_names == ("cat", "dog", "fox") and ds.num_classes == 3
    assert ds.input_shape == (6, 5, 3) and ds.pixel_scale == "uint8 / 255" and ds.notes == ()
    assert np.array_equal(ds.x_train, arrays["x_train"]) and ds.x_train.flags.c_contiguous
    assert np.array_equal(ds.images("test"), arrays["x_test"].astype(np.float32) / 255)
    assert ds.labels("train").dtype == np.int64 and np.array_equal(ds.labels("test"), arrays["y_test"])


def test_bytes_class_names_and_names_for_absent_classes(tmp_path):
    ds = data.load(write(tmp_path, colour_arrays(), [b"cat", b"dog", b"fox", "\u00e9l\u00e8ve".encode()]))
    assert ds.class_names == ("cat", "dog", "fox", "\u00e9l\u00e8ve")
    assert ds.stats()["test"]["class_counts"] == [1, 1, 3, 0]


def test_channels_other_than_1_3_4(tmp_path):
    ds = data.load(write(tmp_path, colour_arrays(channels=2)))
    assert ds.input_shape == (6, 5, 2) and ds.images("train").shape == (12, 6, 5, 2)


def test_without_class_names_the_classes_are_0_to_the_largest_label(tmp_path):
    arrays = colour_arrays()
    arrays["y_test"][1] = 6  # the largest label is in the test split
    ds = data.load(write(tmp_path, arrays))
    assert ds.class_names == ("0", "1", "2", "3", "4", "5", "6")


def test_float32_pixels_are_taken_as_they_are(tmp_path):
    arrays = colour_arrays()
    arrays["x_train"] = (arrays["x_train"] / 100 - 0.5).astype(np.float32)
    arrays["x_test"] = arrays["x_test"].astype(np.float32) * 2
    ds = data.load(write(tmp_path, arrays))
    assert ds.pixel_scale == "float32 as stored" and ds.x_train.dtype == np.float32
    assert np.array_equal(ds.images("train"), arrays["x_train"]) and np.array_equal(ds.images("test"), arrays["x_test"])
    low, high = float(arrays["x_train"].min()), float(arrays["x_test"].max())
    assert ds.notes == (f"float pixels taken as they are, as float32, not divided by 255 (range {low:g}..{high:g})",)
    assert low < 0 and high > 255


def test_images_of_float_data_are_a_copy(tmp_path):
    arrays = colour_arrays()
    arrays["x_train"] = arrays["x_train"].astype(np.float32)
    arrays["x_test"] = arrays["x_test"].astype(np.float32)
    ds = data.load(write(tmp_path, arrays))
    ds.images("train")[:] = -1
    assert np.array_equal(ds.x_train, arrays["x_train"])


def test_float64_pixels_become_float32(tmp_path):
    arrays = colour_arrays()
    arrays["x_train"] = arrays["x_train"] / 255
    arrays["x_test"] = arrays["x_test"] / 255
    ds = data.load(write(tmp_path, arrays))
    assert ds.x_test.dtype == np.float32 and np.array_equal(ds.x_test, arrays["x_test"].astype(np.float32))


def test_float64_pixels_too_large_for_float32_are_refused(tmp_path):
    arrays = colour_arrays()
    arrays["x_train"] = arrays["x_train"].astype(np.float64)
    arrays["x_test"] = arrays["x_test"].astype(np.float64)
    arrays["x_test"][0, 0, 0, 0] = 1e300
    path = write(tmp_path, arrays)
    assert data_refusal(path) == f"{path}: x_test contains NaN or infinite pixels (as float32)"


def test_splits_of_different_pixel_types_are_refused(tmp_path):
    arrays = colour_arrays()
    arrays["x_test"] = arrays["x_test"].astype(np.float32)
    path = write(tmp_path, arrays)
    assert data_refusal(path) == (f"{path}: x_train is uint8 but x_test is float32; store both splits alike "
                             f"(uint8 pixels 0..255, or float32 model inputs)")


def test_label_beyond_the_class_names_is_refused(tmp_path):
    arrays = tiny_arrays()
    arrays["y_test"][:3] = (0, 10, 0)
    path = write(tmp_path, arrays, [str(k) for k in range(10)])
    assert data_refusal(path) == f"{path}: y_test has labels outside 0..9 (e.g. 10); class_names names 10 classes"


def test_label_beyond_the_class_names_in_the_train_split(tmp_path):
    arrays = colour_arrays()
    arrays["y_train"][4] = 3
    path = write(tmp_path, arrays, NAMES)
    assert data_refusal(path) == f"{path}: y_train has labels outside 0..2 (e.g. 3); class_names names 3 classes"


def test_the_last_class_name_has_its_label(tmp_path):
    arrays = colour_arrays()
    arrays["y_train"][:] = 2
    assert data.load(write(tmp_path, arrays, NAMES)).stats()["train"]["class_counts"] == [0, 0, 12]


@pytest.mark.parametrize("names,problem", [
    (np.array([["a", "b"], ["c", "d"]]), "a <U1 array of shape (2, 2)"),
    (np.array([1, 2, 3]), "a int64 array of shape (3,)"),
    (np.array([], dtype=str), "a <U1 array of shape (0,)"),
])
def test_class_names_not_a_list_of_strings(tmp_path, names, problem):
    path = write(tmp_path, colour_arrays(), names)
    assert data_refusal(path) == f"{path}: class_names is {problem}; store a 1-D array of strings, one name per class"


def test_class_names_twice(tmp_path):
    path = write(tmp_path, colour_arrays(), ["cat", "dog", "cat"])
    assert data_refusal(path) == f"{path}: class_names names 'cat' twice; give each class its own name"
    path = write(tmp_path, colour_arrays(), ["cat", "dog", "dog"])  # the name given twice, not the first name
    assert data_refusal(path) == f"{path}: class_names names 'dog' twice; give each class its own name"


def test_class_names_of_bytes_that_are_not_utf8(tmp_path):
    path = write(tmp_path, colour_arrays(), [b"cat", b"\xff", b"fox"])
    assert data_refusal(path) == f"{path}: class_names holds bytes that are not UTF-8; store them as str"


def test_a_label_that_is_no_class_index(tmp_path):
    arrays = colour_arrays()
    arrays["y_train"] = arrays["y_train"] * 0 + data.MAX_CLASSES
    path = write(tmp_path, arrays)
    assert data_refusal(path) == (f"{path}: y_train has label 100000; labels are class indices 0..K-1, at most "
                             f"100,000 classes")
    arrays["y_train"] = arrays["y_train"] - 1  # the largest label allowed
    assert data.load(write(tmp_path, arrays)).num_classes == data.MAX_CLASSES


@pytest.mark.parametrize("size", [(0, 5), (6, 0)])
def test_images_without_pixels_are_refused(tmp_path, size):
    arrays = colour_arrays()
    arrays["x_train"] = np.zeros((12, *size, 3), np.uint8)
    path = write(tmp_path, arrays)
    assert data_refusal(path) == (f"{path}: x_train has shape (12, {size[0]}, {size[1]}, 3); expected (N, H, W) or "
                             f"(N, H, W, C) images")


def test_per_channel_statistics(tmp_path):
    arrays = colour_arrays(channels=4)
    arrays["x_test"][..., 2] = 9
    ds = data.load(write(tmp_path, arrays, NAMES))
    stats = ds.stats()
    assert stats["shape"] == [6, 5, 4] and stats["channels"] == 4 and stats["class_names"] == NAMES
    assert stats["layout"] == ".npz file" and stats["pixel_scale"] == "uint8 / 255" and "skipped_files" not in stats
    for split in ("train", "test"):
        x = arrays[f"x_{split}"].reshape(-1, 4).astype(np.float64)
        s = stats[split]
        assert s["pixel_min"] == x.min(0).tolist() and s["pixel_max"] == x.max(0).tolist()
        assert s["pixel_mean"] == pytest.approx(x.mean(0).tolist(), rel=1e-12)
        assert s["pixel_std"] == pytest.approx(x.std(0).tolist(), rel=1e-12)
    assert stats["test"]["pixel_std"][2] == 0 and stats["test"]["pixel_mean"][2] == 9


def test_statistics_in_chunks_equal_those_in_one_piece(monkeypatch):
    x = np.random.default_rng(2).normal(1e4, 3.0, (50, 4, 3, 2)).astype(np.float32)  # a large mean, a small spread
    whole = data.channel_mean_std(x)
    monkeypatch.setattr(data, "STATS_CHUNK_VALUES", 7)  # one image (24 values) per chunk
    chunked = data.channel_mean_std(x)
    flat = x.reshape(-1, 2).astype(np.float64)
    for mean, std in (whole, chunked):
        assert mean == pytest.approx(flat.mean(0).tolist(), rel=1e-12)
        assert std == pytest.approx(flat.std(0).tolist(), rel=1e-9)


def test_statistics_of_float_pixels_are_floats(tmp_path):
    arrays = colour_arrays()
    arrays["x_train"] = arrays["x_train"].astype(np.float32) / 7
    arrays["x_test"] = arrays["x_test"].astype(np.float32) / 7
    stats = data.load(write(tmp_path, arrays)).stats()
    assert stats["pixel_scale"] == "float32 as stored"
    assert stats["train"]["pixel_max"] == pytest.approx((arrays["x_train"].reshape(-1, 3).max(0)).tolist())
    assert all(type(v) is float for v in stats["train"]["pixel_min"])


# -- the options an image folder takes, and paths that hold no dataset --------------------------------------
@pytest.mark.parametrize("options", [{"color_mode": "rgb"}, {"image_size": (8, 8)}])
def test_folder_options_are_refused_for_an_npz(tmp_path, options):
    path = write(tmp_path, colour_arrays())
    assert data_refusal(path, **options) == (f"{path}: the colour mode and image size (--color-mode, --image-size) apply "
                                        f"to image folders only, not to an .npz file; leave them out")


def test_folder_options_are_refused_for_idx_and_the_bundled_mnist(tmp_path):
    d = write_idx_dir(tmp_path / "idx", tiny_arrays())
    assert data_refusal(d, color_mode="grayscale").startswith(f"{d}: the colour mode and image size")
    assert data_refusal(d, color_mode="grayscale").endswith("not to an IDX directory; leave them out")
    assert data_refusal(None, image_size=(28, 28)).startswith("the bundled MNIST: the colour mode and image size")


@pytest.mark.parametrize("options,message", [
    ({"color_mode": "cmyk"}, "color mode 'cmyk' is not one of grayscale, rgb, rgba"),
    ({"image_size": (32,)}, "image size (32,) is not (height, width) in pixels"),
    ({"image_size": (32, 0)}, "image size (32, 0) is not (height, width) in pixels"),
])
def test_bad_options(tmp_path, options, message):
    assert data_refusal(write(tmp_path, colour_arrays()), **options) == message


def test_a_directory_without_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert data_refusal(tmp_path) == (f"{tmp_path}: no dataset found in this directory; pass {data.LAYOUTS}")


def test_a_path_that_does_not_exist(tmp_path):
    path = tmp_path / "nope"
    assert data_refusal(path) == f"{path}: no such file or directory; pass {data.LAYOUTS}"
    assert data.LAYOUTS == ("a .npz file, an image folder (train/ and test/ of class folders), a CIFAR-10/100 "
                            "directory or MNIST IDX files")


def test_twincnn_data_on_a_float_npz_with_class_names(tmp_path, capsys):
    from twincnn.cli import main

    arrays = colour_arrays(channels=2)
    arrays["x_train"] = arrays["x_train"].astype(np.float32) / 1000
    arrays["x_test"] = arrays["x_test"].astype(np.float32) / 1000
    assert main(["data", "--data", str(write(tmp_path, arrays, NAMES))]) == 0
    out = capsys.readouterr().out
    assert "images:       6x5x2 (height x width x channels), 3 classes" in out
    assert "pixel scale:  float32 as stored" in out and "note:         float pixels taken as they are" in out
    rows = [line.split() for line in out.split("pixels per channel")[1].splitlines()]
    channel_rows = [row for row in rows if row[:1] in (["train"], ["test"])]
    assert [row[:2] for row in channel_rows] == [["train", "0"], ["train", "1"], ["test", "0"], ["test", "1"]]
    assert all(len(row) == 6 for row in channel_rows)  # no "/ 255" columns for model inputs
    assert float(channel_rows[1][3]) == pytest.approx(float(arrays["x_train"][..., 1].max()), rel=1e-3)
    balance = [line.split() for line in out.split("class balance")[1].split("pixels")[0].splitlines()]
    assert ["0", "cat", "4", "1"] in balance and ["2", "fox", "4", "3"] in balance


def test_one_class_is_refused(tmp_path):
    arrays = tiny_arrays()
    arrays["y_train"][:], arrays["y_test"][:] = 0, 0
    assert data_refusal(write(tmp_path, arrays)).endswith("one class only ('0'); a classifier needs two or more")


def test_folder_options_for_the_bundled_mnist_are_refused_naming_it():
    with pytest.raises(data.DataError) as err:
        data.load(color_mode="rgb")
    assert str(err.value) == ("the bundled MNIST: the colour mode and image size (--color-mode, --image-size) apply "
                              "to image folders only, not to an .npz file; leave them out")


def test_an_image_size_of_one_pixel_is_a_size_and_of_none_is_not(tmp_path):
    path = write(tmp_path, tiny_arrays())
    assert "apply to image folders only" in data_refusal(path, image_size=(1, 1))
    assert data_refusal(path, image_size=(0, 4)) == "image size (0, 4) is not (height, width) in pixels"
    assert data_refusal(path, image_size=(4,)) == "image size (4,) is not (height, width) in pixels"


def test_the_one_class_refusal_names_the_file(tmp_path):
    arrays = tiny_arrays()
    arrays["y_train"][:], arrays["y_test"][:] = 1, 1
    path = write(tmp_path, arrays, ["a", "b"])  # two names, one class used: the names say two classes
    assert data.load(path).num_classes == 2
    arrays["y_train"][:], arrays["y_test"][:] = 0, 0
    assert data_refusal(write(tmp_path, arrays)) == f"{path}: one class only ('0'); a classifier needs two or more"


def test_class_names_are_kept_as_a_tuple_and_skipped_files_are_reported():
    x = np.zeros((2, 3, 3, 1), np.uint8)
    ds = data.Dataset(x, np.array([0, 1]), x, np.array([1, 0]), "src", "abc", ["a", "b"], ["a note"], "folder", 3)
    assert ds.class_names == ("a", "b") and ds.notes == ("a note",) and ds.stats()["skipped_files"] == 3


def test_check_fits_names_both_shapes_and_both_class_counts():
    from twincnn.spec import default_spec_for

    x = np.zeros((2, 20, 20, 3), np.uint8)
    ds = data.Dataset(x, np.array([0, 1]), x, np.array([1, 2]), "colour.npz", "abc")
    data.check_fits(default_spec_for((20, 20, 3), 3), ds, "the CNN")  # fits: nothing raised
    with pytest.raises(data.DataError) as err:
        data.check_fits(default_spec_for((28, 28, 1), 3), ds, "spec s.json")
    assert str(err.value) == ("the network (spec s.json) takes images of 28x28x1, the data's are 20x20x3 "
                              "(colour.npz); give a network that fits the data")
    with pytest.raises(data.DataError) as err:
        data.check_fits(default_spec_for((20, 20, 3), 10), ds, "spec s.json")
    assert str(err.value) == ("the network (spec s.json) gives 10 class scores, the data has 3 classes "
                              "(colour.npz); give a network with 3 outputs")


def test_options_are_what_the_command_line_set():
    from argparse import Namespace

    assert data.options(Namespace(color_mode=None, image_size=None)) == {}
    assert data.options(Namespace(color_mode="rgb", image_size=(8, 9))) == {"color_mode": "rgb", "image_size": (8, 9)}
    assert data.options(Namespace(color_mode=None, image_size=(8, 9))) == {"image_size": (8, 9)}
