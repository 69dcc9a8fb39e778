"""Errors a user can fix: the CLI prints their one-line message and exits non-zero, no traceback."""


class UserError(Exception):
    """Bad input or a missing install; the message names the problem and the fix."""
