"""The registry in backends/__init__.py is the only list of frameworks: the files that must name each one
(its pip extra, its tox environment, CI's tox list) are checked against it here, and a fourth framework,
one module and one registry entry, is taken by conformance, summary, audit, the fixtures and the kernel
benchmarks without any other file changing."""

import configparser
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import FAKE_BACKEND_SOURCE, fake_registration, register
from twincnn import backends, weightsfile
from twincnn.audit import UNKNOWN, audit_rows, audit_table
from twincnn.backends import interface
from twincnn.cli import main
from twincnn.spec import DEFAULT_SPEC

ROOT = Path(__file__).resolve().parent.parent


def test_every_framework_has_its_extra_in_all():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    everything = re.fullmatch(r"twincnn\[(.*)\]", extras["all"][0]).group(1).split(",")
    for name, entry in backends.BACKENDS.items():
        assert entry.extra in extras, f"{name}: no extra {entry.extra!r} in pyproject.toml"
        assert entry.extra in everything, f"{name}: the 'all' extra lacks {entry.extra!r}"


def test_every_framework_has_a_tox_environment_that_ci_runs():
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    ci = (ROOT / ".ci" / "run").read_text()
    ci_envs = re.search(r"/tox [^\n]*?-e ([\w,-]+)", ci).group(1).split(",")  # tox or tox p, any options
    for name, entry in backends.BACKENDS.items():
        section = f"testenv:{entry.extra}"
        assert section in tox, f"{name}: tox.ini has no [{section}]"
        assert entry.extra in [e.strip() for e in tox[section]["extras"].split(",")], section
        assert entry.extra in ci_envs, f"{name}: .ci/run does not run tox -e {entry.extra}"


def test_aliases_and_file_formats_come_from_the_registry():
    for name, entry in backends.BACKENDS.items():
        assert backends.canonical_name(name) == name
        assert all(backends.canonical_name(alias) == name for alias in entry.aliases)
        assert all(name in backends.file_owners(suffix) and backends.file_formats()[suffix][1] == carries
                   for suffix, carries in entry.file_formats.items())
    assert backends.canonical_name(" PyTorch ") == "torch" and backends.canonical_name("keras-tensorflow") == "tensorflow"
    # a format several twins read and write (.keras: Keras on every backend) belongs to the first registered
    assert backends.file_formats()[".keras"] == ("tensorflow", True) and backends.file_formats()[".pt"] == ("torch", False)
    assert backends.file_owners(".keras") == [name for name, entry in backends.BACKENDS.items()
                                              if ".keras" in entry.file_formats]


# -- a fourth framework, added by one module and one registry entry ----------------------------------------

@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake framework registered for one test: its module in a temporary folder, nothing of twincnn
    changed."""
    (tmp_path / "twincnn_fake_backend.py").write_text(FAKE_BACKEND_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    register("fake", fake_registration("twincnn_fake_backend"), monkeypatch.setattr)
    return backends.load("fake")


def test_a_fourth_framework_conforms_and_is_found_by_its_names(fake):
    assert interface.conformance(fake) == []
    assert backends.canonical_name("phony") == "fake" and "fake" in backends.available()
    assert backends.file_formats()[".fake"] == ("fake", True)
    assert backends.install_hint("fake") == "fake is not installed: pip install 'twincnn[fake]'"


def test_a_fourth_framework_s_models_and_files_are_its_own(fake, tmp_path):
    """Its models are told by the packages the registry names for it, its files by their suffix there."""
    model = fake.build(DEFAULT_SPEC, seed=3)
    assert backends.framework_of(model) == "fake"
    assert backends.file_owner_here(".fake") == "fake"
    path, neutral = tmp_path / "model.fake", tmp_path / "model.safetensors"
    fake.save_file(model, DEFAULT_SPEC, path)
    assert main(["port", str(path), str(neutral)]) == 0  # read by its owner, as the registry says
    weights, _ = weightsfile.load(neutral)
    assert all(np.array_equal(weights[name], value) for name, value in fake.get_weights(model, DEFAULT_SPEC).items())


def test_summary_and_audit_take_a_fourth_framework(fake, capsys):
    assert main(["summary", "--frameworks", "fake"]) == 0
    out = capsys.readouterr().out
    assert "fake shape" in out and "fake params" in out and out.count("90,978") == 2, out  # the spec's, the twin's
    header = audit_table().splitlines()[0]
    assert "Fake default" in header
    column = 1 + list(backends.BACKENDS).index("fake")
    read = {row[0]: row[column] for row in audit_rows()}  # the fake's column is what its module says
    assert read.pop("GELU default approximation") == "exact (erf), as the reference"
    assert set(read.values()) == {UNKNOWN}, read


FAKE_PLUGIN = '''\
import sys
sys.path.insert(0, {folder!r})
from tests.helpers import fake_registration, register
register("fake", fake_registration("twincnn_fake_backend"))
'''


def test_pair_fixtures_and_kernel_benchmarks_collect_a_fourth_framework(tmp_path):
    """In a pytest run where a plugin registers the fake framework before conftest.py is read, the
    framework and pair fixtures (against the reference twin, the first registered) and the kernel benchmarks are
    parametrized over it, and its kernel benchmarks skip with the reason."""
    (tmp_path / "twincnn_fake_backend.py").write_text(FAKE_BACKEND_SOURCE)
    (tmp_path / "fake_plugin.py").write_text(FAKE_PLUGIN.format(folder=str(tmp_path)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    collect = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "fake_plugin", "--collect-only", "-q", "-p", "no:randomly",
         "tests/test_interface.py", "tests/test_transfer.py", "tests/benchmarks/test_kernels.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert collect.returncode == 0, collect.stdout[-2000:] + collect.stderr[-2000:]
    ids = collect.stdout.splitlines()
    assert "tests/test_interface.py::test_backend_conforms[fake]" in ids
    reference = next(iter(backends.BACKENDS))
    assert any(i.startswith("tests/test_transfer.py::") and f"{reference}-fake" in i for i in ids), ids[:20]
    assert not any("torch-fake" in i for i in ids), "a pair other than the reference twin's was collected"
    assert "tests/benchmarks/test_kernels.py::test_dispatch[fake]" in ids
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "fake_plugin", "-q", "-rs", "-p", "no:randomly", "--benchmark-disable",
         "tests/test_interface.py::test_backend_conforms[fake]", "tests/benchmarks/test_kernels.py::test_dispatch[fake]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:]
    assert "1 passed, 1 skipped" in ran.stdout, ran.stdout[-3000:]
    assert "fake has no kernel benchmarks: add its builders to KERNELS and DISPATCH" in ran.stdout
