"""Code from a user's own file (``check file.py:factory``): when it fails, the error is the user's, told in the
user's terms. A package it imports that is not installed is one line naming it and the install command; any
other exception raised while the file is imported, its factory runs or its model computes shows the frames of
the user's files only (twincnn's and the frameworks' left out) and one line naming the file and the call."""

from __future__ import annotations

import importlib.util
import os
import site
import sys
import traceback
from pathlib import Path

from . import backends

MODULE_PREFIX = "_twincnn_user_"  # the names sources.py gives the modules it loads from users' files
# Python, every installed package (the user's own site-packages too) and twincnn: never a user's file
_NOT_USER = tuple(str(Path(root).resolve()) for root in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                          Path(__file__).parent, *site.getsitepackages(),
                                                          site.getusersitepackages()})


def module_name(path: Path) -> str:
    return f"{MODULE_PREFIX}{path.stem}_{abs(hash(path.resolve()))}"


def _user_files() -> set[str]:
    return {os.path.abspath(module.__file__) for name, module in list(sys.modules.items())
            if name.startswith(MODULE_PREFIX) and getattr(module, "__file__", None)}


def _is_users(filename: str, files: set[str]) -> bool:
    """A user's file: one loaded from the command line, or a file beside it (a module it imports) that is no part
    of Python, the installed packages or twincnn."""
    if filename.startswith("<"):  # no file: "<frozen importlib._bootstrap>", "<string>"
        return False
    path = os.path.abspath(filename)
    if path in files:
        return True
    return (any(path.startswith(os.path.dirname(f) + os.sep) for f in files)
            and not any(path.startswith(root + os.sep) for root in _NOT_USER))


def shown(filename: str) -> str:
    """A file's name as the user likely typed it: relative to the current directory where it is below it."""
    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative


def _call(frame: traceback.FrameSummary, code_name: str) -> str:
    return f"importing {shown(frame.filename)}" if frame.name == "<module>" else f"{shown(frame.filename)}:{code_name}"


def blame(exc: BaseException) -> tuple[str, str] | None:
    """(the traceback of ``exc`` cut to the frames of users' files, the call that failed, e.g. 'k_res.py:build'),
    or None where no user's code ran in it (then it is twincnn's)."""
    files = _user_files()
    if not files:
        return None
    if isinstance(exc, SyntaxError) and exc.filename and _is_users(exc.filename, files):
        return "".join(traceback.format_exception_only(type(exc), exc)), f"importing {shown(exc.filename)}"
    tb, frames, first, entered = exc.__traceback__, [], None, False
    while tb is not None:
        code = tb.tb_frame.f_code
        # only from the first frame of a user's module inward: what called into it is twincnn's (or a test's)
        entered = entered or tb.tb_frame.f_globals.get("__name__", "").startswith(MODULE_PREFIX)
        if entered and _is_users(code.co_filename, files):
            frames.append(traceback.FrameSummary(code.co_filename, tb.tb_lineno, code.co_name))
            first = first or _call(frames[-1], getattr(code, "co_qualname", code.co_name))
        tb = tb.tb_next
    if not frames:
        return None
    text = "Traceback (most recent call last), in your code:\n" + "".join(traceback.format_list(frames))
    return text + "".join(traceback.format_exception_only(type(exc), exc)), first


def not_installed(exc: ImportError, path: Path) -> str | None:
    """'k_res.py: imports 'foo', which is not installed: pip install foo' where ``exc`` is a user's file importing
    a package that is not installed; None for any other import error (a name a package lacks, a package's own
    missing dependency), which keeps its traceback."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    files = _user_files()
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not frame.filename.startswith("<frozen")]
    if importlib.util.find_spec(top) is not None or not frames or not _is_users(frames[-1].filename, files):
        return None
    return f"{path}: imports {top!r}, which is not installed: {install_command(top)}"


def install_command(package: str) -> str:
    for entry in backends.BACKENDS.values():
        if package in (entry.package, *entry.model_packages):
            return f"pip install 'twincnn[{entry.extra}]'"
    return f"pip install {package}"
