"""`twincnn compare` on a user's own data and model: any image size, channels and classes, `--model`,
`--keep-weights`, `--min-accuracy`, and the one-line refusals when the network does not fit the data.

One compare run (every installed framework, a model of the user's own on colour images in three named classes)
feeds every assertion about a run's results; the refusals run in-process and train nothing.
"""

import json
import textwrap
from argparse import Namespace

import numpy as np
import pytest

from PIL import Image

from tests.helpers import frameworks
from tests.mnist_files import write_image_folder
from twincnn import backends, data
from twincnn.cli import build_parser, main
from twincnn.compare.command import below_accuracy, headline, make_plan
from twincnn.spec import Spec, default_spec_for
from twincnn.weights import digest, initial_weights

CLASSES = ["cat", "dog", "fox"]
SIZE = (20, 20)


def colour_arrays(n_train=256, n_test=64, size=SIZE, classes=len(CLASSES), seed=3):
    """Colour images whose class k brightens channel k % 3 in band k: learnable in a few steps, but a quarter of
    the test labels are wrong."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, classes, n).astype(np.int64)
        x = rng.integers(0, 60, (n, *size, 3)).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 * k:2 * k + 4, :, k % 3] = 255
        return x, y

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    y_test[::4] = (y_test[::4] + 1) % classes  # a quarter mislabelled: no model scores above 75 % + chance
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write(path, arrays, class_names=None):
    np.savez(path, **arrays, **({"class_names": np.array(class_names)} if class_names else {}))
    return path


USER_MODEL = textwrap.dedent("""
    import torch.nn as nn
    import torch.nn.functional as F


    class SmallNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.fc = nn.Linear(8 * 9 * 9, 3)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv(x)), 2)
            return F.log_softmax(self.fc(x.flatten(1)), dim=1)
""")


@pytest.fixture(scope="module")
def colour_npz(tmp_path_factory):
    return write(tmp_path_factory.mktemp("colour") / "colour.npz", colour_arrays(), CLASSES)


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small_net.py"
    path.write_text(USER_MODEL)
    return f"{path}:SmallNet"


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """The colour arrays as an image folder of PNGs in class folders, every fifth image 4 pixels larger (so that
    only --image-size makes one size of them)."""
    arrays = colour_arrays()
    splits = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        splits[split] = {name: [np.asarray(Image.fromarray(image).resize((24, 24), Image.BILINEAR))
                                if i % 5 == 0 else image for i, image in enumerate(x[y == k])]
                         for k, name in enumerate(CLASSES)}
    return write_image_folder(tmp_path_factory.mktemp("folder") / "photos", splits)


@pytest.fixture(scope="module")
def model_run(tmp_path_factory, colour_folder, user_model):
    """Every installed framework's twin of the user's torch module (ending in log_softmax), from its own weights,
    on an image folder of mixed sizes, one repeat, with a --min-accuracy no model reaches on these labels."""
    if not backends.is_available("torch"):
        pytest.skip(backends.install_hint("torch"))
    names = frameworks(len(backends.natives()), distinct=True) if len(backends.natives()) > 1 else ["torch"]
    out = tmp_path_factory.mktemp("run") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        rc = main(["compare", "--no-progress", "--no-floor", "--out", str(out), "--frameworks", ",".join(names),
                   "--data", str(colour_folder), "--image-size", f"{SIZE[0]},{SIZE[1]}", "--model", user_model,
                   "--keep-weights", "--repeats", "1", "--min-accuracy", "0.9"])
    return rc, names, out, json.loads((out / "results.json").read_text())


def test_a_run_on_colour_images_names_its_classes(model_run):
    rc, names, out, doc = model_run
    assert doc["data"]["input_shape"] == [*SIZE, 3] and doc["data"]["class_names"] == CLASSES
    assert doc["data"]["options"] == {"image_size": list(SIZE)} and "resized" in " ".join(doc["data"]["notes"])
    for label in names:
        figures = doc["frameworks"][label]
        assert np.array(figures["confusion_matrix"]).shape == (3, 3)
        assert np.array(figures["confusion_matrix"]).sum() == doc["data"]["test_images"]
        assert set(CLASSES) <= set(figures["classification_report"])
    report = (out / "report.md").read_text()
    assert "cat" in report and "fox" in report and "rows: true class" in report
    assert len(doc["verdicts"]) == len(names) - 1


def test_the_model_read_is_the_spec_written_and_printed(model_run, user_model, capsys):
    rc, names, out, doc = model_run
    written = Spec.from_dict(json.loads((out / "spec.json").read_text()))
    assert written == Spec.from_dict(doc["config"]["spec"])
    assert main(["spec", user_model, "--input-shape", f"{SIZE[0]},{SIZE[1]},3"]) == 0
    assert Spec.from_dict(json.loads(capsys.readouterr().out)) == written
    assert written.input_shape == (*SIZE, 3) and written.num_classes == 3
    assert [i.type for i in written.info if i.params] == ["conv2d", "dense"] and written.output == "log_softmax"
    assert doc["config"]["network"] == f"read from {user_model}"
    assert doc["config"]["initial_weights"] == "the model's own"


def test_keep_weights_starts_every_twin_from_the_models_own_weights(model_run):
    rc, names, out, doc = model_run
    spec = Spec.from_dict(doc["config"]["spec"])
    started = {doc["frameworks"][label]["runs"][0]["start_weights_sha256"] for label in names}
    assert len(started) == 1 and None not in started, "every twin from the same weights"
    assert started != {digest(initial_weights(spec, doc["config"]["seeds"][0]))}, "not the seed's canonical ones"


def test_min_accuracy_fails_the_run_after_writing_it(model_run):
    rc, names, out, doc = model_run
    assert rc == 1 and (out / "results.json").is_file()
    below = below_accuracy(doc["frameworks"], 0.9)
    assert [line.split(":")[0] for line in below] == names
    assert below_accuracy(doc["frameworks"], 0.0) == [] and below_accuracy(doc["frameworks"], None) == []


def compare_args(*argv) -> Namespace:
    return build_parser().parse_args(["compare", "--no-progress", "--no-floor", *argv])


def test_without_a_spec_the_default_cnn_is_built_for_the_data(colour_npz, tmp_path):
    plan = make_plan(compare_args("--data", str(colour_npz), "--out", str(tmp_path / "o")), tmp_path)
    assert plan.spec == default_spec_for((*SIZE, 3), 3) and plan.spec.num_classes == 3
    text = headline(plan)
    assert "the notebook's CNN built for 20x20x3 images in 3 classes" in text
    assert f"{plan.spec.total_params:,} parameters" in text


def test_the_default_cnn_on_mnist_is_the_notebooks():
    from twincnn.spec import DEFAULT_SPEC

    assert default_spec_for((28, 28, 1), 10) == DEFAULT_SPEC and DEFAULT_SPEC.total_params == 90_978


def refused(capsys, tmp_path, *argv) -> str:
    out = tmp_path / "out"
    assert main(["compare", "--no-progress", "--no-floor", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and not out.exists(), err
    return err[0]


def test_a_spec_for_other_images_is_refused_naming_both_shapes(colour_npz, capsys, tmp_path):
    line = refused(capsys, tmp_path, "--data", str(colour_npz), "--spec", "zoo:lenet5")
    assert "takes images of 28x28x1, the data's are 20x20x3" in line


def test_a_spec_with_other_classes_is_refused_naming_both_counts(capsys, tmp_path):
    arrays = colour_arrays(64, 16, size=(28, 28))
    arrays = {k: (v[..., :1] if k.startswith("x") else v) for k, v in arrays.items()}
    line = refused(capsys, tmp_path, "--data", str(write(tmp_path / "gray.npz", arrays)), "--spec", "zoo:lenet5")
    assert "gives 10 class scores, the data has 3 classes" in line


def test_images_too_small_for_the_default_cnn_are_refused(capsys, tmp_path):
    path = write(tmp_path / "small.npz", colour_arrays(64, 16, size=(17, 30)))
    line = refused(capsys, tmp_path, "--data", str(path))
    assert "17x30 are too small for the default CNN (it takes at least 18x18)" in line and "--model" in line


def test_keep_weights_needs_a_model(colour_npz, capsys, tmp_path):
    line = refused(capsys, tmp_path, "--data", str(colour_npz), "--keep-weights")
    assert "--keep-weights starts from the weights of --model" in line


def test_a_dataset_loads_with_its_class_names(colour_npz):
    dataset = data.load(colour_npz)
    assert dataset.class_names == tuple(CLASSES) and dataset.input_shape == (*SIZE, 3)


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """keras.applications' MobileNetV2 (alpha 0.35, untrained) for 32x32 colour images in two classes, ending in
    softmax as keras.applications models do, saved as a .keras file; and colour data it fits."""
    keras = pytest.importorskip("keras", reason=backends.install_hint("tensorflow"))
    folder = tmp_path_factory.mktemp("mnv2")
    model = keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(32, 32, 3), classes=2)
    model.save(folder / "mnv2.keras")
    arrays = colour_arrays(128, 64, size=(32, 32), classes=2)
    return folder / "mnv2.keras", write(folder / "colour.npz", arrays, ["plain", "red"])


@pytest.mark.slow  # a 150-layer network read, twinned and trained in every framework
@pytest.mark.parametrize("framework", list(backends.BACKENDS))
def test_a_keras_applications_model_is_the_same_function_as_each_twin(mobilenet, framework, capsys):
    path, npz = mobilenet
    if not backends.is_available(framework):
        pytest.skip(backends.install_hint(framework))
    assert main(["check", str(path), "--twin", framework, "--data", str(npz), "--samples", "64"]) == 0
    out = capsys.readouterr().out
    assert "output softmax" in out and "verdict: the same function" in out, out


@pytest.mark.slow
def test_a_keras_applications_model_compares_in_every_framework(mobilenet, tmp_path, capsys):
    path, npz = mobilenet
    names = backends.natives()  # what compare runs by default
    assert main(["compare", "--no-progress", "--no-floor", "--out", str(tmp_path / "out"), "--model", str(path),
                 "--data", str(npz), "--repeats", "1", "--quick"]) == 0
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["config"]["frameworks"] == names and len(doc["verdicts"]) == len(names) - 1
    assert Spec.from_dict(doc["config"]["spec"]).output == "softmax"
    assert all(np.array(doc["frameworks"][n]["confusion_matrix"]).shape == (2, 2) for n in names)
