"""What the worker and rank processes write, kept off the terminal unless it explains a failure.

Each child's stderr (and its stdout, where the parent does not read it) goes to a temporary file of its own,
unlinked from the start, so that nothing is left behind however the run ends. Progress bars still reach the
terminal as they are drawn: the child draws them on a copy of the parent's stderr that it is handed
(progress.PROGRESS_FD). Everything else a child writes (framework warnings, a traceback, a surviving rank's
engine error once its peer has died, an engine's connection notices) stays in the files: dropped after a
healthy run; after a failure the root cause's own output is shown where it is a bug's traceback, and all of
it is kept in one file that the error line names (after a Ctrl-C nothing is kept). Under ``twincnn --verbose``
the children write to the terminal directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import quiet
from .progress import PROGRESS_FD


class ChildLogs:
    """One run's children's logs, by label; a context manager that closes them."""

    def __init__(self, prefix: str):
        self.prefix = prefix  # of the file keep() writes
        self.logs = {}
        self.terminal = None if quiet.is_verbose() else os.dup(2)

    def __enter__(self):
        return self

    def __exit__(self, *failure):
        self.close()

    def popen(self, command: list[str], label: str, environment: dict | None = None,
              **options) -> subprocess.Popen:
        """``command`` started with its stderr, and its stdout unless ``options`` name it, in the log ``label``
        and the terminal handed on for its progress bars; as it is under --verbose."""
        if self.terminal is None:
            return subprocess.Popen(command, env=environment, **options)
        log = self.logs[label] = tempfile.TemporaryFile()
        environment = {**(os.environ if environment is None else environment), PROGRESS_FD: str(self.terminal)}
        options.setdefault("stdout", log)
        return subprocess.Popen(command, env=environment, stderr=log, pass_fds=(self.terminal,), **options)

    def text(self, label: str) -> str:
        """What the child ``label`` has written so far (read without moving the offset it writes at)."""
        log = self.logs.get(label)
        if log is None:
            return ""
        fd = log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def last_written(self, label: str) -> int:
        log = self.logs.get(label)
        return os.fstat(log.fileno()).st_mtime_ns if log is not None else 0

    def show(self, label: str) -> None:
        """Write one child's log to stderr: the traceback of the process whose bug ended the run."""
        text = self.text(label)
        if text.strip():
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()

    def keep(self) -> Path | None:
        """Every child's log that holds anything, in one file in the temporary folder; None if all are empty."""
        logs = [(label, self.text(label)) for label in self.logs]
        logs = [(label, text) for label, text in logs if text.strip()]
        if not logs:
            return None
        handle, kept = tempfile.mkstemp(prefix=self.prefix, suffix=".log")
        with os.fdopen(handle, "w") as file:
            file.writelines(f"--- {label} ---\n{text}" + ("" if text.endswith("\n") else "\n") for label, text in logs)
        return Path(kept)

    def close(self) -> None:
        for log in self.logs.values():
            log.close()
        self.logs = {}
        if self.terminal is not None:
            os.close(self.terminal)
            self.terminal = None
