"""Shared fixtures: `framework` over every twin, `pair` over each twin against the reference twin, seeding, markers,
hypothesis profiles.

A framework that is not installed shows up as a *skip* with the install hint, never as a crash.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import pytest

from tests.helpers import layered_twins, reference_pairs, require
from twincnn import backends
from twincnn.spec import DEFAULT_SPEC

pytest_plugins = ["pytester"]  # tests of the twin_check fixture run pytest on a user's test file

try:  # hypothesis is a test extra; property tests import it themselves
    from hypothesis import HealthCheck, settings

    # CI: derandomized and bounded so the default run stays well under a minute.
    settings.register_profile("ci", max_examples=30, derandomize=True, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    # Local: a longer, random search. HYPOTHESIS_PROFILE=thorough pytest tests/test_properties.py
    settings.register_profile("thorough", max_examples=300, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover
    pass

SEED = 42
FRAMEWORKS = list(backends.BACKENDS)
PAIRS = reference_pairs()  # each other twin against the reference twin, the first registered (helpers.py says why)
LAYERED = layered_twins()  # their equivalence tests run in the slow pass (helpers.py says why)
# fixtures for tests of what passes between two particular frameworks, by name (marked as needing both)
NAMED_PAIRS = {"tf_and_torch": ("tensorflow", "torch"), "tf_and_jax": ("tensorflow", "jax"),
               "torch_and_jax": ("torch", "jax")}


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="run the slow tests (full 5-epoch accuracy gate); CI passes this")
    parser.addoption("--isa-cap", choices=backends.ISA_CAP_LEVELS, default=None,
                     help="cap every framework's CPU code at this instruction set (equivalence must hold there too)")


def frameworks_of(item) -> set[str]:
    """The frameworks a test needs, as far as collection can tell: a framework-valued parameter
    (`framework`, `name`, or a tuple of names such as a pair) or a named pair's fixture (NAMED_PAIRS)."""
    names = set()
    for value in getattr(getattr(item, "callspec", None), "params", {}).values():
        for part in value if isinstance(value, tuple) else (value,):  # lists are CLI args, not pairs
            if isinstance(part, str) and part in FRAMEWORKS:
                names.add(part)
    for fixture, pair in NAMED_PAIRS.items():
        if fixture in item.fixturenames:
            names.update(pair)
    return names


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options
def pytest_configure(config):
    """Plain `pytest` times nothing: benchmarks are skipped unless asked for. `--benchmark-disable` runs each
    benchmarked function once, untimed, as a check (CI does); `--benchmark-only` times them."""
    cap_isa(config.getoption("--isa-cap"))
    if getattr(config.option, "numprocesses", None):  # pytest-xdist's -n: set before it starts its test processes
        share_the_cores()
    for name, entry in backends.BACKENDS.items():
        config.addinivalue_line("markers", f"{name}: needs {entry.label} (skipped with the install hint where absent)")
    asked = [config.getoption(name, False) for name in ("benchmark_only", "benchmark_disable", "benchmark_enable")]
    if hasattr(config.option, "benchmark_skip") and not any(asked):
        config.option.benchmark_skip = True


def share_the_cores() -> None:
    """Test processes side by side share the cores: OpenMP threads (PyTorch's) that spin while they wait for work
    keep a core from the other process, so they sleep instead. The processes they start inherit it. No test here
    judges a time: those that do are marked alone, and CI runs them in one process, without -n."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cap_isa(level: str | None) -> None:
    """Set the frameworks' instruction-set caps; they are read when a framework starts, so none may have yet."""
    if level is None:
        return
    started = [name for name, entry in backends.BACKENDS.items() if entry.package in sys.modules]
    if started:
        raise pytest.UsageError(f"--isa-cap {level}: {', '.join(started)} already started; its cap would not apply")
    os.environ.update(backends.isa_cap_environment(level, os.environ))


def pytest_collection_modifyitems(config, items):
    # Marked at collection, not in a fixture: `pytest -m torch` selects before any fixture runs.
    for item in items:
        names = frameworks_of(item)
        for name in names:
            item.add_marker(getattr(pytest.mark, name))
        if len(names) > 1:
            item.add_marker(pytest.mark.both)
        if names & LAYERED and "equivalence" in item.keywords:
            item.add_marker(pytest.mark.slow)
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same NumPy/Python random state."""
    random.seed(SEED)
    np.random.seed(SEED)
    yield SEED


@pytest.fixture(params=FRAMEWORKS, ids=FRAMEWORKS)
def framework(request):
    """Each installed framework's backend module; a missing one is skipped with the install hint."""
    return require(request.param)


@pytest.fixture
def spec():
    return DEFAULT_SPEC


@pytest.fixture
def model(framework, spec):
    """The notebook's CNN built by `framework` from the spec."""
    return framework.build(spec, seed=SEED)


@pytest.fixture(scope="session", params=PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def pair(request):
    """(the reference twin's backend, another framework's backend) for each other framework; skipped with the
    install hint if either is missing."""
    return tuple(require(name) for name in request.param)


@pytest.fixture(scope="session")
def tf_and_torch():
    """The Keras and PyTorch backends, in that order, for tests of what passes between those two (each skips,
    saying what to install, without either)."""
    return tuple(require(name) for name in NAMED_PAIRS["tf_and_torch"])


@pytest.fixture(scope="session")
def tf_and_jax():
    """The Keras and JAX backends, in that order (skipped, saying what to install, without either)."""
    return tuple(require(name) for name in NAMED_PAIRS["tf_and_jax"])


@pytest.fixture(scope="session")
def torch_and_jax():
    """The PyTorch and JAX backends, for what those two share against Keras (each skips without either)."""
    return tuple(require(name) for name in NAMED_PAIRS["torch_and_jax"])


@pytest.fixture(scope="session")
def mnist():
    from twincnn import data

    return data.load()
