"""keep_freed_memory(): freed activation-sized buffers come back without page faults."""

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")

# Allocate and free a 16 MB buffer (about three of a step's activations) 20 times; count minor faults.
PROBE = """
import resource, sys, numpy as np
from twincnn.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    print(keep_freed_memory(), file=sys.stderr)
np.ones(4 << 20, dtype=np.float32)  # the first touch faults either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    buffer = np.ones(4 << 20, dtype=np.float32)
    del buffer
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def faults_per_cycle(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return float(out.stdout)


def test_freed_buffers_are_reused_without_page_faults():
    default, kept = faults_per_cycle("default"), faults_per_cycle("keep")
    print(f"minor page faults per 16 MB alloc/free: default allocator {default:.1f}, kept {kept:.1f}")
    assert kept <= 1, f"{kept:.1f} page faults per cycle after keep_freed_memory() (expected ~0)"


def test_reports_what_is_in_force():
    from twincnn.allocator import keep_freed_memory

    assert keep_freed_memory().startswith("glibc malloc")
