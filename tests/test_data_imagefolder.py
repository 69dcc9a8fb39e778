"""Image folders (DIR/train/<class>/*, DIR/test/<class>/*): decoding, colour modes, sizes, the cache, the pool
of worker processes, and the one-line refusals."""

import io
import os
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import data_refusal
from tests.mnist_files import random_images, write_image_folder
from twincnn import data, imagefolder
from twincnn.cli import main


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """Each test its own, empty cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "twincnn"


def colour_folder(root, shape=(6, 5, 3)):
    """Two classes; train: 3 + 2 images, test: 1 + 2; RGB."""
    return write_image_folder(root, {
        "train": {"dog": random_images(2, shape, seed=1), "cat": random_images(3, shape, seed=2)},
        "test": {"cat": random_images(1, shape, seed=3), "dog": random_images(2, shape, seed=4)},
    })


def decoded(path, mode="RGB"):
    with Image.open(path) as img:
        return np.asarray(img.convert(mode))



def test_colour_png_folder(tmp_path):
    root = colour_folder(tmp_path / "pets")
    ds = data.load(root)
    assert ds.class_names == ("cat", "dog") and ds.input_shape == (6, 5, 3) and ds.x_train.dtype == np.uint8
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1] and ds.y_test.tolist() == [0, 1, 1]
    expected = [decoded(root / "train" / "cat" / f"{i}.png") for i in range(3)]
    expected += [decoded(root / "train" / "dog" / f"{i}.png") for i in range(2)]
    assert np.array_equal(ds.x_train, np.stack(expected))
    assert np.array_equal(ds.x_train[3], random_images(2, (6, 5, 3), seed=1)[0])  # PNG is lossless
    assert np.array_equal(ds.x_test[2], random_images(2, (6, 5, 3), seed=4)[1])
    assert ds.source == str(root) and ds.layout == "image folder (train/<class>/*, test/<class>/*)"
    assert ds.skipped_files == 0 and ds.stats()["skipped_files"] == 0 and ds.pixel_scale == "uint8 / 255"
    assert ds.notes == ("decoded from 8 files", "colour mode rgb (the images are in colour)")


def test_png_and_jpeg_and_other_files(tmp_path):
    root = colour_folder(tmp_path / "pets")
    jpeg = root / "train" / "cat" / "extra.JPG"
    Image.fromarray(random_images(1, (6, 5, 3), seed=9)[0]).save(jpeg, format="JPEG")
    Image.fromarray(random_images(1, (6, 5, 3), seed=8)[0]).save(root / "test" / "dog" / "z.jpeg")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "README").write_text("outside every class folder")
    (root / "test" / "dog" / ".DS_Store").write_bytes(b"\0")
    ds = data.load(root)
    assert len(ds.x_train) == 6 and len(ds.x_test) == 4 and ds.skipped_files == 3
    assert np.array_equal(ds.x_train[3], decoded(jpeg))  # sorted: 0, 1, 2, extra.JPG
    assert ds.notes[0] == "decoded from 10 files; 3 other files skipped (not .png, .jpg, .jpeg, .bmp, .gif)"


def test_one_skipped_file_is_singular(tmp_path):
    root = colour_folder(tmp_path / "pets")
    (root / "test" / "cat" / "x.tiff").write_bytes(b"")
    assert data.load(root).notes[0] == "decoded from 8 files; 1 other file skipped (not .png, .jpg, .jpeg, .bmp, .gif)"


def test_images_in_subfolders_of_a_class_bmp_and_gif(tmp_path):
    root = colour_folder(tmp_path / "pets")
    nested = root / "train" / "dog" / "more" / "deeper"
    nested.mkdir(parents=True)
    bmp = random_images(1, (6, 5, 3), seed=5)[0]
    Image.fromarray(bmp).save(nested / "a.bmp")
    frames = [Image.fromarray(np.full((6, 5), v, np.uint8)) for v in (10, 200)]
    frames[0].save(root / "test" / "cat" / "anim.GIF", save_all=True, append_images=frames[1:])
    ds = data.load(root)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1] and np.array_equal(ds.x_train[5], bmp)
    assert np.array_equal(ds.x_test[1], np.full((6, 5, 3), 10, np.uint8))  # the GIF's first frame, in RGB


def test_grayscale_folder(tmp_path):
    root = write_image_folder(tmp_path / "digits", {
        "train": {"0": random_images(2, (7, 7), seed=1), "1": random_images(2, (7, 7), seed=2)},
        "test": {"1": random_images(1, (7, 7), seed=3)}})
    ds = data.load(root)
    assert ds.input_shape == (7, 7, 1) and ds.class_names == ("0", "1") and ds.y_test.tolist() == [1]
    assert np.array_equal(ds.x_train[2, ..., 0], random_images(2, (7, 7), seed=2)[0])
    assert ds.notes[1] == "colour mode grayscale (every image is grayscale)"
    rgb = data.load(root, color_mode="rgb")
    assert rgb.input_shape == (7, 7, 3) and np.array_equal(rgb.x_train, np.repeat(ds.x_train, 3, axis=-1))
    assert rgb.notes[1] == "colour mode rgb (as asked)"
    rgba = data.load(root, color_mode="rgba")
    assert rgba.input_shape == (7, 7, 4) and (rgba.x_test[..., 3] == 255).all()
    assert np.array_equal(rgba.x_test[..., :3], rgb.x_test)


def test_colour_images_asked_for_in_grayscale(tmp_path):
    root = colour_folder(tmp_path / "pets")
    ds = data.load(root, color_mode="grayscale")
    assert ds.input_shape == (6, 5, 1)
    assert np.array_equal(ds.x_test[0, ..., 0], decoded(root / "test" / "cat" / "0.png", "L"))


def test_grey_and_colour_images_together_make_rgb(tmp_path):
    root = colour_folder(tmp_path / "pets")
    grey = random_images(1, (6, 5), seed=7)[0]
    Image.fromarray(grey).save(root / "test" / "cat" / "grey.png")
    Image.fromarray(np.stack([grey, grey], -1), mode="LA").save(root / "test" / "cat" / "grey_alpha.png")
    ds = data.load(root)
    assert ds.input_shape == (6, 5, 3)
    assert np.array_equal(ds.x_test[1], np.repeat(grey[..., None], 3, -1))
    assert np.array_equal(ds.x_test[2], np.repeat(grey[..., None], 3, -1))
    assert ds.notes[1] == "colour mode rgb (not every image is grayscale; 2 grayscale images repeated in R, G, B)"


def test_sixteen_bit_grayscale_keeps_the_high_byte(tmp_path):
    root = colour_folder(tmp_path / "pets")
    Image.fromarray(np.array([[0, 255, 256, 65535, 40000]] * 6, np.uint16)).save(root / "test" / "dog" / "deep.png")
    ds = data.load(root, color_mode="grayscale")
    assert ds.x_test[3, 0, :, 0].tolist() == [0, 0, 1, 255, 156]


def test_mixed_sizes_are_refused_naming_the_first_odd_file(tmp_path):
    root = colour_folder(tmp_path / "pets")
    Image.fromarray(random_images(1, (9, 5, 3))[0]).save(root / "train" / "dog" / "9.png")
    Image.fromarray(random_images(1, (4, 4, 3))[0]).save(root / "test" / "cat" / "4.png")
    first = root / "train" / "cat" / "0.png"
    assert data_refusal(root) == (f"{root / 'train' / 'dog' / '9.png'}: 9x5 pixels (HxW), but {first} is 6x5; images of "
                             f"several sizes need --image-size H,W (image_size=(H, W)) to resize them all")


def test_mixed_sizes_resized_with_pillow_bilinear(tmp_path):
    root = colour_folder(tmp_path / "pets")
    big = random_images(1, (12, 10, 3), seed=6)[0]
    Image.fromarray(big).save(root / "train" / "dog" / "9.png")
    ds = data.load(root, image_size=(6, 5))
    assert ds.input_shape == (6, 5, 3) and len(ds.x_train) == 6
    expected = np.asarray(Image.fromarray(big).resize((5, 6), Image.BILINEAR))
    assert np.array_equal(ds.x_train[5], expected)
    assert np.array_equal(ds.x_train[0], decoded(root / "train" / "cat" / "0.png"))  # the right size: as it is
    assert ds.notes[1] == "images resized to 6x5 (Pillow bilinear): 1 of 9 had another size"
    other = data.load(root, image_size=(4, 8))
    assert other.input_shape == (4, 8, 3)
    assert other.notes[1] == "images resized to 4x8 (Pillow bilinear): 9 of 9 had another size"


def test_the_smallest_image_size(tmp_path):
    ds = data.load(colour_folder(tmp_path / "pets"), image_size=(1, 1))
    assert ds.input_shape == (1, 1, 3) and len(ds.y_train) == 5


def test_the_checksum_is_of_the_decoded_images_and_class_names(tmp_path):
    a = data.load(colour_folder(tmp_path / "a"))
    b = data.load(colour_folder(tmp_path / "b"))
    assert a.sha256 == b.sha256 and len(a.sha256) == 64  # the same images in another folder
    renamed = colour_folder(tmp_path / "c")
    (renamed / "test" / "dog").rename(renamed / "test" / "doggo")
    (renamed / "train" / "dog").rename(renamed / "train" / "doggo")
    assert data.load(renamed).sha256 != a.sha256
    changed = colour_folder(tmp_path / "d")
    pixels = random_images(2, (6, 5, 3), seed=4)[1]
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(changed / "test" / "dog" / "1.png")
    assert data.load(changed).sha256 != a.sha256


# -- the cache -------------------------------------------------------------------------------------------------
def _decoding_fails(monkeypatch):
    def refuse(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagefolder, "decode_chunk", refuse)


def test_a_second_load_reads_the_cache(tmp_path, monkeypatch, cache_home):
    root = colour_folder(tmp_path / "pets")
    first = data.load(root)
    files = list(cache_home.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    _decoding_fails(monkeypatch)
    second = data.load(root)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(first, key), getattr(second, key)), key
    assert (second.class_names, second.sha256, second.skipped_files) == (first.class_names, first.sha256, 0)
    assert second.notes == first.notes + (f"decoded images read from the cache {files[0]}",)


def test_a_changed_file_is_decoded_again(tmp_path, monkeypatch, cache_home):
    root = colour_folder(tmp_path / "pets")
    data.load(root)
    path = root / "test" / "cat" / "0.png"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    calls = []
    original = imagefolder.decode_chunk
    monkeypatch.setattr(imagefolder, "decode_chunk", lambda *args: calls.append(1) or original(*args))
    ds = data.load(root)
    assert calls and not ds.notes[-1].startswith("decoded images read from the cache")
    assert len(list(cache_home.iterdir())) == 1  # replaced, not added to
    _decoding_fails(monkeypatch)
    assert data.load(root).notes[-1].startswith("decoded images read from the cache")


@pytest.mark.parametrize("change", ["add", "remove", "skipped"])
def test_added_removed_and_skipped_files_invalidate_the_cache(tmp_path, monkeypatch, change):
    root = colour_folder(tmp_path / "pets")
    data.load(root)
    if change == "add":
        Image.fromarray(random_images(1, (6, 5, 3))[0]).save(root / "train" / "dog" / "new.png")
    elif change == "remove":
        (root / "train" / "dog" / "1.png").unlink()
    else:
        (root / "train" / "dog" / "notes.txt").write_text("x")
    ds = data.load(root)
    assert not ds.notes[-1].startswith("decoded images read from the cache")
    assert len(ds.y_train) == {"add": 6, "remove": 4, "skipped": 5}[change]


def test_each_colour_mode_and_size_has_its_own_cache_file(tmp_path, cache_home):
    root = colour_folder(tmp_path / "pets")
    data.load(root)
    data.load(root, color_mode="grayscale")
    data.load(root, image_size=(3, 3))
    assert len(list(cache_home.iterdir())) == 3
    assert data.load(root, color_mode="grayscale").input_shape == (6, 5, 1)


def test_an_unwritable_cache_does_not_fail_the_load(tmp_path, monkeypatch):
    blocker = tmp_path / "not a directory"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    root = colour_folder(tmp_path / "pets")
    ds = data.load(root)
    assert len(ds.y_train) == 5
    assert ds.notes[-1].startswith("cache not written (") and "\n" not in ds.notes[-1]


def test_a_failed_cache_write_leaves_no_temporary_file(tmp_path, monkeypatch, cache_home):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imagefolder.np, "savez", disk_full)
    ds = data.load(colour_folder(tmp_path / "pets"))
    assert ds.notes[-1] == "cache not written (OSError: [Errno 28] No space left on device)"
    assert list(cache_home.iterdir()) == []


def test_a_damaged_cache_is_decoded_again(tmp_path, cache_home):
    root = colour_folder(tmp_path / "pets")
    first = data.load(root)
    (cache_file,) = cache_home.iterdir()
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    again = data.load(root)
    assert again.notes == first.notes and np.array_equal(again.x_train, first.x_train)


def test_the_cache_lives_under_xdg_cache_home_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert imagefolder.cache_dir() == tmp_path / "x" / "twincnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert imagefolder.cache_dir() == tmp_path / "home" / ".cache" / "twincnn"


# -- decoding in worker processes, with a progress bar ----------------------------------------------------------
def _counted_pools(monkeypatch) -> list:
    pools = []

    class CountedPool(imagefolder.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(imagefolder, "ProcessPoolExecutor", CountedPool)
    return pools


def test_a_pool_of_workers_decodes_the_same(tmp_path, monkeypatch):
    root = colour_folder(tmp_path / "pets")
    pools = _counted_pools(monkeypatch)
    monkeypatch.setattr(imagefolder, "worker_count", lambda: 2)
    alone = data.load(root, color_mode="rgba")
    assert pools == []  # fewer files than POOL_MIN_FILES: decoded in this process
    monkeypatch.setattr(imagefolder, "POOL_MIN_FILES", 8)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other cache"))
    pooled = data.load(root, color_mode="rgba")
    assert pools == [(2,)]
    monkeypatch.setattr(imagefolder, "worker_count", lambda: 1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "third cache"))
    data.load(root, color_mode="rgba")
    assert pools == [(2,)]  # one core: no pool, however many files
    assert np.array_equal(alone.x_train, pooled.x_train) and np.array_equal(alone.x_test, pooled.x_test)
    assert alone.sha256 == pooled.sha256


def test_a_corrupt_image_in_a_worker_is_one_line(tmp_path, monkeypatch):
    root = colour_folder(tmp_path / "pets")
    bad = root / "test" / "dog" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60])
    monkeypatch.setattr(imagefolder, "POOL_MIN_FILES", 2)
    monkeypatch.setattr(imagefolder, "worker_count", lambda: 2)
    assert data_refusal(root).startswith(f"{bad}: not a readable image (")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_progress_bar_on_a_terminal_only(tmp_path, monkeypatch):
    root = colour_folder(tmp_path / "pets")
    monkeypatch.setattr(sys, "stderr", Terminal())
    data.load(root, color_mode="grayscale")
    assert "decoding pets" in sys.stderr.getvalue() and "8/8" in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    data.load(root, color_mode="rgb")
    assert sys.stderr.getvalue() == ""


def test_chunks_cover_every_file_once(tmp_path, monkeypatch):
    root = colour_folder(tmp_path / "pets")
    chunks = []
    original = imagefolder.decode_chunk
    monkeypatch.setattr(imagefolder, "decode_chunk", lambda root, files, *rest: chunks.append(files) or
                        original(root, files, *rest))
    monkeypatch.setattr(imagefolder, "worker_count", lambda: 1)
    monkeypatch.setattr(imagefolder, "CHUNKS_PER_WORKER", 3)
    data.load(root)
    assert [len(c) for c in chunks] == [3, 3, 2]
    assert sum(chunks, []) == ["train/cat/0.png", "train/cat/1.png", "train/cat/2.png", "train/dog/0.png",
                               "train/dog/1.png", "test/cat/0.png", "test/dog/0.png", "test/dog/1.png"]


# -- what an image folder may not be ----------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["train", "test"])
def test_a_split_folder_is_missing(tmp_path, missing):
    root = colour_folder(tmp_path / "pets")
    for path in sorted((root / missing).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / missing).rmdir()
    assert data_refusal(root) == (f"{root}: an image folder needs both train/ and test/, each with a folder per class; "
                             f"{root / missing} is missing")


def test_an_empty_class_folder(tmp_path):
    root = colour_folder(tmp_path / "pets")
    (root / "train" / "eel").mkdir()
    (root / "train" / "eel" / "readme.txt").write_text("no images yet")
    assert data_refusal(root) == (f"{root / 'train' / 'eel'}: an empty class folder (no .png, .jpg, .jpeg, .bmp, .gif "
                             f"files); add images or remove the folder")


def test_an_empty_test_class_folder(tmp_path):
    root = colour_folder(tmp_path / "pets")
    (root / "test" / "dog" / "more").mkdir()
    for name in ("0.png", "1.png"):
        (root / "test" / "dog" / name).unlink()
    assert data_refusal(root).startswith(f"{root / 'test' / 'dog'}: an empty class folder")


def test_a_class_in_test_that_train_lacks(tmp_path):
    root = colour_folder(tmp_path / "pets")
    write_image_folder(root, {"test": {"cow": random_images(1, (6, 5, 3))}})
    assert data_refusal(root) == (f"{root / 'test' / 'cow'}: class 'cow' has no folder in {root / 'train'}; every test "
                             f"class needs train images (rename or remove the folder)")


def test_a_class_in_train_only_is_a_class_without_test_images(tmp_path):
    root = colour_folder(tmp_path / "pets")
    write_image_folder(root, {"train": {"ant": random_images(1, (6, 5, 3))}})
    ds = data.load(root)
    assert ds.class_names == ("ant", "cat", "dog") and ds.y_test.tolist() == [1, 2, 2]
    assert ds.stats()["test"]["class_counts"] == [0, 1, 2]


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_split_without_class_folders(tmp_path, split):
    root = tmp_path / "pets"
    other = "test" if split == "train" else "train"
    write_image_folder(root, {other: {"cat": random_images(1, (6, 5, 3))}})
    (root / split).mkdir()
    (root / split / "0.png").write_bytes(b"")
    what = "images" if split == "train" else "test images"
    assert data_refusal(root) == (f"{root / split}: no class folders; put each class's {what} in {split}/<class name>/")


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\nnot really", b"GIF89a"])
def test_a_corrupt_image_is_named(tmp_path, content):
    root = colour_folder(tmp_path / "pets")
    bad = root / "train" / "dog" / "broken.png"
    bad.write_bytes(content)
    message = data_refusal(root)
    assert message.startswith(f"{bad}: not a readable image (") and message.endswith("); replace or remove the file")


def test_a_truncated_image_is_named(tmp_path):
    root = colour_folder(tmp_path / "pets", shape=(60, 50, 3))
    bad = root / "test" / "cat" / "0.jpg"
    Image.fromarray(random_images(1, (60, 50, 3))[0]).save(bad)
    bad.write_bytes(bad.read_bytes()[:300])
    assert data_refusal(root).startswith(f"{bad}: not a readable image (OSError: ")


def test_folder_options_are_checked_before_the_folder(tmp_path):
    assert data_refusal(colour_folder(tmp_path / "pets"), color_mode="hsv").startswith("color mode 'hsv' is not one of")


# -- the command ---------------------------------------------------------------------------------------------------
def test_twincnn_data_on_an_image_folder(tmp_path, capsys):
    root = colour_folder(tmp_path / "pets")
    Image.fromarray(random_images(1, (8, 8, 3))[0]).save(root / "train" / "dog" / "big.png")
    assert main(["data", "--data", str(root), "--color-mode", "grayscale", "--image-size", "6,5"]) == 0
    out = capsys.readouterr().out
    assert "layout:       image folder (train/<class>/*, test/<class>/*)" in out
    assert "images:       6x5x1 (height x width x channels), 2 classes" in out
    assert "note:         images resized to 6x5 (Pillow bilinear): 1 of 9 had another size" in out
    rows = [line.split() for line in out.split("class balance")[1].splitlines()]
    assert ["0", "cat", "3", "1"] in rows and ["1", "dog", "3", "2"] in rows


def test_twincnn_data_refuses_mixed_sizes_in_one_line(tmp_path, capsys):
    root = colour_folder(tmp_path / "pets")
    Image.fromarray(random_images(1, (8, 8, 3))[0]).save(root / "train" / "dog" / "big.png")
    assert main(["data", "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"twincnn data: error: {root / 'train' / 'dog' / 'big.png'}: 8x8 pixels (HxW)")
    assert len(err.strip().splitlines()) == 1


def test_a_folder_of_one_class_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    one = {"only": random_images(2, (4, 4, 3))}
    folder = write_image_folder(tmp_path / "f", {"train": one, "test": one})
    assert data_refusal(folder) == f"{folder}: one class only ('only'); a classifier needs two or more"
