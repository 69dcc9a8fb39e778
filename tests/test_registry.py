"""The registry in backends/__init__.py is the only list of frameworks: the files that must name each one
(its pip extra, its tox environment, CI's tox list) are checked against it here."""

import configparser
import re
import tomllib
from pathlib import Path

from twincnn import backends

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
    ci_envs = re.search(r"tox -q -e ([\w,]+)", ci).group(1).split(",")
    for name, entry in backends.BACKENDS.items():
        section = f"testenv:{entry.extra}"
        assert section in tox, f"{name}: tox.ini has no [{section}]"
        assert entry.extra in [e.strip() for e in tox[section]["extras"].split(",")], section
        assert entry.extra in ci_envs, f"{name}: .ci/run does not run tox -e {entry.extra}"


def test_aliases_and_file_formats_come_from_the_registry():
    for name, entry in backends.BACKENDS.items():
        assert backends.canonical_name(name) == name
        assert all(backends.canonical_name(alias) == name for alias in entry.aliases)
        assert all(backends.FILE_FORMATS[suffix] == (name, carries) for suffix, carries in entry.file_formats.items())
    assert backends.canonical_name(" PyTorch ") == "torch"
    assert backends.FILE_FORMATS[".keras"] == ("tensorflow", True) and backends.FILE_FORMATS[".pt"] == ("torch", False)
