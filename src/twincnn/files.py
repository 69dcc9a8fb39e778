"""Writing a file so that no reader, and no interrupted run, ever sees it half-written."""

from __future__ import annotations

import os
from pathlib import Path


def replace_atomically(final: Path, write) -> None:
    """``write(path)`` into a hidden sibling, then renamed to ``final`` in one step. The sibling keeps
    ``final``'s suffix, for writers that choose the format by it (Keras's .keras, NumPy's .npz)."""
    final = Path(final)
    tmp = final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
