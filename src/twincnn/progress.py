"""One progress bar look for every framework; cheap enough to sit inside the timed loop (<2 % overhead)."""

from __future__ import annotations

import os
import sys
import time

# In a worker whose stderr is a log file (childlogs.py): the file descriptor of the terminal its bars go to.
PROGRESS_FD = "TWINCNN_PROGRESS_FD"
_terminal = None


def terminal():
    """Where bars are drawn: the terminal a worker was handed, else stderr."""
    global _terminal
    if PROGRESS_FD not in os.environ:
        return sys.stderr
    if _terminal is None:
        _terminal = os.fdopen(int(os.environ[PROGRESS_FD]), "w", closefd=False)
    return _terminal


class Progress:
    """``update(done)`` after each step. Redraws at most every ``interval`` seconds; on a non-terminal
    it prints one line per epoch instead, so CI logs stay readable."""

    def __init__(self, label: str, total: int, stream=None, enabled: bool = True, interval: float = 0.2):
        self.label, self.total = label, total
        self.stream = stream or terminal()
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.start = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self.last < self.interval and done < self.total:
            return
        self.last = now
        self.stream.write("\r" + self._line(done, now - self.start))
        self.stream.flush()

    def _line(self, done: int, elapsed: float) -> str:
        width = 24
        filled = int(width * done / max(1, self.total))
        per_step = elapsed / max(1, done)
        timing = f"ETA {per_step * (self.total - done):5.1f}s" if done < self.total else f"{elapsed:6.1f}s"
        return (f"{self.label:<28} [{'#' * filled}{'.' * (width - filled)}] {done:>5}/{self.total} "
                f"{per_step * 1e3:6.1f} ms/step  {timing}")

    def pause(self) -> None:
        """Another worker trains next: end the bar's line here, so its bar starts on a line of its own."""
        self.paused_at = time.perf_counter()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def resume(self) -> None:
        """Training goes on after a pause: the pause counts neither in ms/step nor in the ETA."""
        self.start += time.perf_counter() - self.paused_at

    def close(self, elapsed: float | None = None, note: str = "") -> None:
        """Finish the bar with the timed seconds (the caller's clock, so untimed work after it is excluded)."""
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start if elapsed is None else elapsed
        line = self._line(self.total, elapsed) + (f"  {note}" if note else "")
        self.stream.write(("\r" if self.tty else "") + line + "\n")
        self.stream.flush()
