"""The framework-neutral .safetensors file: bit-exact round trips through `twincnn port`, the spec in its
metadata, one-line errors, and a plain NumPy forward pass written from the documented layout alone."""

import json

import numpy as np
import pytest

from tests.helpers import LOGIT_ATOL, assert_close, assert_same_argmax
from twincnn import backends, weightsfile
from twincnn.cli import main
from twincnn.spec import DEFAULT_SPEC, FLATTEN, Spec, canonical, conv, dense, pool
from twincnn.weights import random_weights

# Native file suffix per framework, for the round trips below (each twin's own format).


def own_suffix(name: str) -> str:
    """The first of the file formats the registry gives the framework: its own."""
    return next(iter(backends.BACKENDS[name].file_formats))


def documented_forward(weights: dict, x: np.ndarray) -> np.ndarray:
    """The notebook CNN from spec.py's layout description only, in float64, one kernel offset at a time:
    conv kernel (kh, kw, in, out) over NHWC input, 'valid'; 2x2 max-pool, stride 2; flatten in (H, W, C)
    order; dense kernel (in, out). Independent of twincnn.reference on purpose."""
    h = x.astype(np.float64)
    for layer in ("conv1", "pool1", "conv2", "pool2", "conv3", "flatten", "fc1", "fc2"):
        if layer.startswith("conv"):
            kernel, bias = weights[f"{layer}/kernel"].astype(np.float64), weights[f"{layer}/bias"]
            kh, kw = kernel.shape[:2]
            oh, ow = h.shape[1] - kh + 1, h.shape[2] - kw + 1
            out = np.zeros((len(h), oh, ow, kernel.shape[3]))
            for i in range(kh):
                for j in range(kw):
                    out += h[:, i:i + oh, j:j + ow, :] @ kernel[i, j]
            h = np.maximum(out + bias, 0)
        elif layer.startswith("pool"):
            n, hh, ww, c = h.shape
            h = h[:, :hh // 2 * 2, :ww // 2 * 2].reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
        elif layer == "flatten":
            h = h.reshape(len(h), -1)
        else:
            h = h @ weights[f"{layer}/kernel"] + weights[f"{layer}/bias"]
            if layer == "fc1":
                h = np.maximum(h, 0)
    return h


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """The first 500 real test digits: port verifies on them, quickly."""
    from tests.mnist_files import write_npz
    from twincnn import data

    ds = data.load()
    return write_npz(tmp_path_factory.mktemp("data") / "small.npz",
                     {"x_train": ds.x_train[:10], "y_train": ds.y_train[:10],
                      "x_test": ds.x_test[:500], "y_test": ds.y_test[:500]})


def saved_twin(backend, tmp_path, seed=4, scale=0.3):
    """A twin with random weights and non-zero biases, saved in its framework's own format."""
    model = backend.build(DEFAULT_SPEC, seed=seed)
    backend.set_weights(model, DEFAULT_SPEC, random_weights(DEFAULT_SPEC, seed, scale))
    path = tmp_path / f"model{own_suffix(backend.NAME)}"
    backend.save_file(model, DEFAULT_SPEC, path)
    return model, path


def test_file_round_trip_keeps_every_bit_and_the_spec():
    spec = Spec((28, 28, 1), (conv(6, 3, 2, "same"), pool(2), FLATTEN, dense(12, "relu"), dense(10)))
    weights = random_weights(spec, 1)
    back, stored = weightsfile.from_bytes(weightsfile.to_bytes(spec, weights))
    assert stored == spec and list(back) == list(spec.weight_shapes())
    for name, value in weights.items():
        assert back[name].dtype == np.float32 and np.array_equal(back[name], value), name


def test_port_to_safetensors_and_back_is_bit_exact(framework, tmp_path, small_data, capsys, mnist):
    model, path = saved_twin(framework, tmp_path)
    neutral = tmp_path / "w.safetensors"
    assert main(["port", str(path), str(neutral), "--data", str(small_data)]) == 0
    assert "plain NumPy forward pass" in capsys.readouterr().out
    weights, spec = weightsfile.load(neutral)
    assert canonical(spec) == canonical(DEFAULT_SPEC)  # a .keras file is read in the canonical spelling
    original = framework.get_weights(model, DEFAULT_SPEC)
    assert all(np.array_equal(weights[k], original[k]) for k in original)

    back = tmp_path / f"back{own_suffix(framework.NAME)}"
    assert main(["port", str(neutral), str(back), "--data", str(small_data)]) == 0
    reloaded, _ = framework.load_file(back, DEFAULT_SPEC)
    for name, value in framework.get_weights(reloaded, DEFAULT_SPEC).items():
        assert np.array_equal(value, original[name]), f"{name} changed on the way back"
    x = mnist.images("test")  # verified on the whole test set, not only the port's sample
    assert np.array_equal(framework.predict(reloaded, x), framework.predict(model, x))


def test_numpy_from_the_documented_layout_reproduces_a_loaded_file(framework, tmp_path, mnist):
    model, _ = saved_twin(framework, tmp_path, seed=8, scale=1.0)  # logits that depend on the image
    neutral = tmp_path / "w.safetensors"
    weightsfile.save(neutral, DEFAULT_SPEC, framework.get_weights(model, DEFAULT_SPEC))
    weights, _ = weightsfile.load(neutral)
    x = mnist.images("test")[:2000]
    expected = documented_forward(weights, x)
    logits = framework.predict(model, x)
    spread = np.ptp(expected, axis=0).max()  # logits that barely depend on the image would prove nothing
    assert spread > 0.1, f"logits vary by only {spread:.3g} across images"
    assert_close(logits, expected, LOGIT_ATOL, f"{framework.NAME} vs NumPy from the documented layout")
    assert_same_argmax(logits, expected, "NumPy forward pass")


def test_metadata_says_what_the_file_is(tmp_path):
    path = tmp_path / "w.safetensors"
    weightsfile.save(path, DEFAULT_SPEC, random_weights(DEFAULT_SPEC, 0))
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert Spec.from_dict(json.loads(meta[weightsfile.SPEC_KEY])) == DEFAULT_SPEC
    assert "(kh, kw, in, out)" in meta[weightsfile.LAYOUT_KEY] and "(H, W, C)" in meta[weightsfile.LAYOUT_KEY]


@pytest.mark.parametrize("content,message", [
    (b"", "not a safetensors file"),
    (b"\x05\x00\x00\x00\x00\x00\x00\x00{}", "not a safetensors file"),
    (None, "does not match --spec"),
])
def test_bad_neutral_files_are_one_line(tmp_path, capsys, content, message):
    src = tmp_path / "w.safetensors"
    if content is None:  # a good file, but --spec names another network
        weightsfile.save(src, DEFAULT_SPEC, random_weights(DEFAULT_SPEC, 0))
        spec_file = tmp_path / "small.json"
        spec_file.write_text(json.dumps(Spec((28, 28, 1), (conv(4), FLATTEN, dense(10))).to_dict()))
        extra = ["--spec", str(spec_file)]
    else:
        src.write_bytes(content)
        extra = []
    out = tmp_path / "o.safetensors.pt"
    assert main(["port", str(src), str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_file_without_a_spec_needs_one():
    from safetensors.numpy import save

    blob = save({k: v for k, v in random_weights(DEFAULT_SPEC, 0).items()})
    with pytest.raises(ValueError, match="no spec in its metadata; pass --spec"):
        weightsfile.from_bytes(blob)
    weights, spec = weightsfile.from_bytes(blob, DEFAULT_SPEC)
    assert spec == DEFAULT_SPEC and list(weights) == list(DEFAULT_SPEC.weight_shapes())
