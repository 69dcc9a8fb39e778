"""The CLI's foundation commands and its error contract: one line, non-zero exit, no traceback."""

import subprocess
import sys

import pytest

from tests.mnist_files import tiny_arrays, write_idx_dir
from twincnn import backends
from twincnn.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "twincnn.cli", *args], capture_output=True, text=True)


def test_data_bundled(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "60,000" in out and "10,000" in out and "verified" in out
    assert "980" in out and "1,135" in out


def test_data_idx_dir(tmp_path, capsys):
    d = write_idx_dir(tmp_path / "idx", tiny_arrays(), gz=True)
    assert main(["data", "--data", str(d)]) == 0
    table = capsys.readouterr().out.split("class balance")[0]
    rows = {line.split()[0]: line.split()[1:3] for line in table.splitlines() if line.split()[:1] in (["train"], ["test"])}
    assert rows == {"train": ["200", "200"], "test": ["50", "50"]}, rows  # images and labels per split


def test_summary_shows_totals(capsys):
    rc = main(["summary"])
    out = capsys.readouterr().out
    assert rc == 0, out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1:] == ["90,978"] * (1 + len(backends.natives())), total  # the spec, then each native twin
    assert "agree: every framework matches the spec's shapes and parameter counts" in out


@pytest.mark.parametrize("args,message", [
    (["data", "--data", "/nonexistent/x.npz"], "no such file or directory"),
    (["summary", "--spec", "/nonexistent/spec.json"], "no such spec file"),
    (["summary", "--frameworks", "mxnet"], "unknown framework 'mxnet'"),
])
def test_bad_input_is_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_bad_npz_cli(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    result = run_cli("data", "--data", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(bad) in result.stderr and len(result.stderr.strip().splitlines()) == 1
