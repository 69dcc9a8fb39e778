"""Instruction sets: what the CPU offers, what each framework runs at under a cap, and what results record."""

import json
import os
import subprocess
import sys

import pytest

from twincnn import backends, machine

pytestmark = pytest.mark.equivalence


@pytest.mark.parametrize("flags, level", [
    ({"sse4_1", "sse4_2", "avx", "avx2", "fma", "avx512f"}, "AVX512"),
    ({"sse4_1", "sse4_2", "avx", "avx2", "fma"}, "AVX2"),
    ({"sse4_1", "sse4_2", "avx"}, "AVX"),
    ({"sse4_1", "sse4_2"}, "SSE4_2"),
    ({"sse4_1"}, "SSE4_1"),
])
def test_cpu_isa_is_the_highest_level_offered(flags, level):
    assert machine.cpu_isa(flags) == level


def test_cpu_isa_without_x86_levels_names_the_architecture(monkeypatch):
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    assert machine.cpu_isa({"fp", "asimd"}) == "aarch64"


@pytest.mark.parametrize("cap, cpu, level", [
    ("AVX2", "AVX512", "AVX2"), ("sse4_2", "AVX512", "SSE4_2"), ("AVX512", "AVX2", "AVX2"),
    (None, "AVX2", "AVX2"), ("bogus", "AVX2", "AVX2"), ("AVX2", "aarch64", "aarch64"),
])
def test_a_cap_lowers_the_level_never_raises_it(cap, cpu, level):
    assert machine.capped_isa(cap, cpu) == level


def test_every_framework_has_a_cap_for_every_level():
    assert set(backends.isa_caps()) == set(backends.BACKENDS)
    for variable, values in backends.isa_caps().values():
        assert set(values) == set(backends.ISA_CAP_LEVELS), variable


def test_cap_environment_keeps_other_xla_flags_and_refuses_unknown_levels():
    env = backends.isa_cap_environment("SSE4_2", {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"})
    assert env["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false --xla_cpu_max_isa=SSE4_2"
    again = backends.isa_cap_environment("AVX2", env)  # a cap replaces an earlier one
    assert again["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false --xla_cpu_max_isa=AVX2"
    assert env["ATEN_CPU_CAPABILITY"] == "default" and env["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    with pytest.raises(backends.UserError, match="unknown instruction-set cap 'AVX9'"):
        backends.isa_cap_environment("AVX9", {})


# What each framework reports at the SSE4.2 cap, from a fresh process (the caps are read at start).
CAPPED_REPORT = {"tensorflow": "oneDNN SSE4_1", "torch": "DEFAULT", "jax": "SSE4_2"}


@pytest.mark.parametrize("name", list(backends.BACKENDS))
def test_each_framework_runs_and_reports_the_capped_level(name):
    """The cap variables are the ones each framework reads: a started framework reports the capped level in
    the environment results.json records (torch from ATen's own dispatch, the others from their caps)."""
    if not backends.is_available(name):
        pytest.skip(backends.install_hint(name))
    if machine.cpu_isa() not in machine.ISA_LEVELS:
        pytest.skip(f"no x86 instruction-set levels on {machine.cpu_isa()}")
    env = {**os.environ, **backends.isa_cap_environment("SSE4_2", os.environ)}
    code = (f"import json; from twincnn import backends; b = backends.load({name!r}); "
            "print(json.dumps(b.environment()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # a twin on another framework's engine (Keras on JAX) reports that framework's level
    expected = CAPPED_REPORT.get(name) or CAPPED_REPORT[backends.BACKENDS[name].runs_on]
    assert json.loads(out.stdout.strip().splitlines()[-1])["isa"] == expected
