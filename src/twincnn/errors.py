"""Errors the CLI tells in one line, no traceback of its own: a user's (exit 2), and a child process's bug whose
traceback has been shown already (exit 1)."""


class UserError(Exception):
    """Bad input or a missing install; the message names the problem and the fix."""


class ProcessFailed(RuntimeError):
    """A worker or rank process died of a bug: its own output (the traceback) has been shown, so the CLI adds
    this one line rather than the parent's frames, which only relayed it."""
