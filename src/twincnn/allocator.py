"""Keep freed memory in the process, so timings do not depend on what the process did before.

A training step allocates and frees a few activation buffers of ~5 MB. glibc's malloc serves blocks that
size with mmap and hands them back to the kernel on free (or trims the heap), so the next step page-faults
them in again. Whether that happens depends on the heap's history: the same tuned PyTorch step took
11.5-13.2 ms with 3,100-3,800 minor page faults per step in fresh processes, and 7.8-8.0 ms with none
once the thresholds below were raised. Raising them makes every run the cheap case, for both
frameworks, like pinning the thread count.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # 1 GiB: far above any buffer a step allocates; the heap may keep that much


def keep_freed_memory() -> str:
    """Set glibc's malloc thresholds once for this process; say what is in force (for the results)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl): leave the allocator alone
        return "system default (no glibc mallopt)"
    if mallopt(_M_MMAP_THRESHOLD, THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, THRESHOLD) != 1:
        return "system default (mallopt refused)"
    return "glibc malloc, mmap and trim thresholds 1 GiB"
