"""Bad input is one line (exit 2); any other exception keeps its traceback.

Each guarded call catches only the exceptions that mean "this input is unusable". These tests feed
both kinds through each guard: bad input must still come out as one line, and an unrelated error
(ZeroDivisionError, a RuntimeError that is not about the file) must propagate, not be swallowed.
"""

import collections
import io
import os
import pickle
import subprocess
import sys
import textwrap
import types
import zipfile

import pytest

from tests.helpers import shell_environment
from twincnn.cli import main
from twincnn.errors import UserError
from twincnn.spec import DEFAULT_SPEC


# -- twincnn port: load_file's ValueError is the user error, nothing broader ----------------------
def fake_backends(monkeypatch, load_file):
    """port with stand-in backends: the error contract is checked without importing a framework."""
    from twincnn import port

    fake = types.SimpleNamespace(load_file=load_file)
    monkeypatch.setattr(port.backends, "twin", lambda name: fake)  # port reaches each twin through twin()


def test_port_bad_input_is_one_line(monkeypatch, tmp_path, capsys):
    def load_file(path, spec):
        raise ValueError("holds a list, not a state_dict\nsecond line never shown")

    fake_backends(monkeypatch, load_file)
    src = tmp_path / "w.pt"
    src.write_bytes(b"x")
    assert main(["port", str(src), str(tmp_path / "o.keras")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"twincnn port: error: {src}: holds a list, not a state_dict"], err
    assert not (tmp_path / "o.keras").exists()


@pytest.mark.parametrize("error", [ZeroDivisionError("division by zero"), KeyError("conv1.weight"),
                                   RuntimeError("CUDA error: an illegal memory access")])
def test_port_does_not_swallow_other_errors(monkeypatch, tmp_path, error):
    def load_file(path, spec):
        raise error

    fake_backends(monkeypatch, load_file)
    src = tmp_path / "w.pt"
    src.write_bytes(b"x")
    with pytest.raises(type(error)):
        main(["port", str(src), str(tmp_path / "o.keras")])


# -- PyTorch: what torch.load raises for files that are not state_dicts ----------------------------
def _torch_files(tmp_path):
    import torch

    good = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, good)
    good = good.getvalue()
    module = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), module)
    foreign_zip = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign_zip, "w") as z:
        z.writestr("notes.txt", "hello")
    return {
        "text": b"not a torch file",
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "corrupted": good[:200] + b"\0" * 50 + good[250:],
        "foreign zip": foreign_zip.read_bytes(),
        "plain pickle": pickle.dumps({"conv1.weight": [1, 2]}),
        "pickled module": module.getvalue(),
    }


TORCH_BAD = ["text", "empty", "truncated", "corrupted", "foreign zip", "plain pickle", "pickled module"]


@pytest.mark.torch
@pytest.mark.parametrize("case", TORCH_BAD)
def test_torch_load_file_bad_input_is_value_error(tmp_path, case):
    from tests.helpers import require

    tb = require("torch")
    path = tmp_path / "bad.pt"
    path.write_bytes(_torch_files(tmp_path)[case])
    with pytest.raises(ValueError, match="not a PyTorch state_dict") as err:
        tb.load_file(path, DEFAULT_SPEC)
    assert "\n" not in str(err.value)


@pytest.mark.torch
def test_torch_load_file_wrong_contents_name_the_problem(tmp_path):
    from tests.helpers import require

    tb = require("torch")
    import torch

    path = tmp_path / "w.pt"
    torch.save(collections.OrderedDict(a=torch.zeros(1)), path)
    with pytest.raises(ValueError, match="does not match the spec"):
        tb.load_file(path, DEFAULT_SPEC)
    state = tb.build(DEFAULT_SPEC, seed=0).state_dict()
    state["fc2.bias"] = 3  # the right keys, one value not a tensor
    torch.save(state, path)
    with pytest.raises(ValueError, match="fc2.bias holds a int, not a tensor"):
        tb.load_file(path, DEFAULT_SPEC)


@pytest.mark.torch
@pytest.mark.parametrize("error", [ZeroDivisionError("bug"), RuntimeError("CUDA error: out of memory")])
def test_torch_load_file_propagates_other_errors(monkeypatch, tmp_path, error):
    from tests.helpers import require

    tb = require("torch")

    def broken_load(*args, **kwargs):
        raise error

    monkeypatch.setattr(tb.torch, "load", broken_load)
    path = tmp_path / "w.pt"
    path.write_bytes(b"x")
    with pytest.raises(type(error), match=str(error)):
        tb.load_file(path, DEFAULT_SPEC)


# -- Keras: what keras.saving.load_model raises for files that are not models ----------------------
def _keras_bad_files(tmp_path):
    no_config = tmp_path / "no_config.keras"
    with zipfile.ZipFile(no_config, "w") as z:
        z.writestr("notes.txt", "hello")
    bad_config = tmp_path / "bad_config.keras"
    with zipfile.ZipFile(bad_config, "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("metadata.json", "{}")
    unknown = tmp_path / "unknown_layer.keras"
    with zipfile.ZipFile(unknown, "w") as z:
        z.writestr("config.json", '{"class_name": "NoSuchLayer", "config": {}, "module": "nowhere"}')
        z.writestr("metadata.json", "{}")
    text_keras, text_h5 = tmp_path / "text.keras", tmp_path / "text.h5"
    text_keras.write_text("not a model")
    text_h5.write_text("not an h5 file")
    return [text_keras, no_config, bad_config, unknown, text_h5]


@pytest.mark.tensorflow
def test_keras_load_file_bad_input_is_value_error(tmp_path):
    from tests.helpers import require

    tfb = require("tensorflow")
    for path in _keras_bad_files(tmp_path):
        with pytest.raises(ValueError, match="not a Keras model file") as err:
            tfb.load_file(path, None)
        assert "\n" not in str(err.value), path.name


@pytest.mark.tensorflow
def test_keras_load_file_propagates_other_errors(monkeypatch, tmp_path):
    from tests.helpers import require

    tfb = require("tensorflow")

    def broken_load(*args, **kwargs):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(tfb.keras.saving, "load_model", broken_load)
    with pytest.raises(ZeroDivisionError):
        tfb.load_file(tmp_path / "m.keras", None)


# -- The quiet Keras import: silent when it works, says why when it fails --------------------------
def _import_tensorflow_backend(extra_path=None):
    """Importing the Keras twin in a fresh process started from a user's shell."""
    env = shell_environment()
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", "import twincnn.backends.tensorflow"],
                          capture_output=True, text=True, env=env)


def test_failed_keras_import_shows_what_it_wrote(tmp_path):
    """A broken install: native code writes the reason to fd 2, then the import fails. Both are shown."""
    fake = tmp_path / "keras"
    fake.mkdir()
    (fake / "__init__.py").write_text(textwrap.dedent("""
        import os
        os.write(2, b"libcudnn.so.9: cannot open shared object file\\n")
        raise ImportError("keras could not load its native library")
    """))
    result = _import_tensorflow_backend(tmp_path)
    assert result.returncode != 0
    assert "libcudnn.so.9: cannot open shared object file" in result.stderr, result.stderr
    assert "keras could not load its native library" in result.stderr, result.stderr


@pytest.mark.tensorflow
def test_keras_import_is_quiet_when_it_works():
    from tests.helpers import require

    require("tensorflow")
    result = _import_tensorflow_backend()
    assert result.returncode == 0 and result.stderr == "", result.stderr


# -- Benchmarks: only "this device is not available" becomes a skip -------------------------------
def _benchmark_backend(monkeypatch, error):
    from tests.benchmarks import test_benchmarks

    def resolve_device(device):
        raise error

    fake = types.SimpleNamespace(resolve_device=resolve_device, configure=lambda threads: {})
    monkeypatch.setattr(test_benchmarks, "require", lambda name: fake)
    return test_benchmarks._backend("torch")


def test_benchmark_skips_an_unavailable_device(monkeypatch):
    with pytest.raises(pytest.skip.Exception, match="sees no GPU"):
        _benchmark_backend(monkeypatch, UserError("--device cuda: this TensorFlow sees no GPU"))


def test_benchmark_fails_on_other_errors(monkeypatch):
    try:
        _benchmark_backend(monkeypatch, ZeroDivisionError("bug"))
    except ZeroDivisionError:
        return
    except pytest.skip.Exception as skip:  # caught here: left alone, a wrong skip would skip this test too
        pytest.fail(f"a ZeroDivisionError became a skip: {skip}")
    pytest.fail("_backend raised nothing")


# -- Quieting any framework: what its registry entry names, unless the user or --verbose says otherwise -------
NOISY_PACKAGE = """
import os
os.write(2, b"a notice from native code while loading\\n")
{ending}
"""


@pytest.fixture
def noisy_framework(monkeypatch, tmp_path):
    """A registered framework whose package writes a notice to fd 2 while it loads, and whose log variable
    TWINCNN_TEST_LOG quiets nothing by itself; the import machinery and the environment are restored after."""
    import dataclasses

    from twincnn import backends, quiet

    for name, ending in (("twincnn_noisy_ok", ""), ("twincnn_noisy_broken", "raise ImportError('no native library')")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(NOISY_PACKAGE.format(ending=ending))
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", [finder for finder in sys.meta_path
                                           if not isinstance(finder, quiet.QuietImports)])
    for name in ("TWINCNN_TEST_LOG", "TWINCNN_VERBOSE"):  # absent, and absent again afterwards: delenv alone
        monkeypatch.setenv(name, "")                       # records nothing for an absent variable, and what
        monkeypatch.delenv(name)                           # quiet.start() then sets would outlive the test
    entry = dataclasses.replace(backends.BACKENDS["torch"], quiet_environment={"TWINCNN_TEST_LOG": "quiet"},
                                quiet_imports=("twincnn_noisy_ok", "twincnn_noisy_broken"))
    monkeypatch.setattr(backends, "BACKENDS", {"noisy": entry})


def test_a_quieted_import_drops_its_notices_and_shows_them_when_it_fails(noisy_framework, capfd):
    from twincnn import quiet

    quiet.start()
    assert os.environ["TWINCNN_TEST_LOG"] == "quiet"
    import twincnn_noisy_ok  # noqa: F401

    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError, match="no native library"):
        import twincnn_noisy_broken  # noqa: F401
    assert capfd.readouterr().err == "a notice from native code while loading\n"


@pytest.mark.parametrize("how", ["the user's own value", "--verbose"])
def test_a_framework_is_left_as_it_is_under_the_user_s_log_setting_or_verbose(noisy_framework, capfd, monkeypatch, how):
    from twincnn import quiet

    if how == "--verbose":
        quiet.start(verbose=True)
        assert "TWINCNN_TEST_LOG" not in os.environ, "--verbose sets no framework variable"
    else:
        monkeypatch.setenv("TWINCNN_TEST_LOG", "loud")
        quiet.start(verbose=False)
        assert os.environ["TWINCNN_TEST_LOG"] == "loud"
    import twincnn_noisy_ok  # noqa: F401

    assert capfd.readouterr().err == "a notice from native code while loading\n"


def test_workers_inherit_the_choice(noisy_framework, monkeypatch):
    from twincnn import quiet

    quiet.start(verbose=True)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    quiet.start()  # what a worker does: no choice of its own
    assert quiet.is_verbose() and "TWINCNN_TEST_LOG" not in os.environ
