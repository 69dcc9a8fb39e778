"""A twin that cannot run in this process, run in one of its own: `python -m twincnn.backends.isolated NAME`.

Keras reads its backend once per process, so the Keras twins on JAX and on PyTorch cannot join a process where
Keras runs on TensorFlow (and so on). ``start(name)`` gives an object with the backend module's functions and
constants; calling one runs it in the twin's process. What it returns comes back as it is where it is a NumPy
array, a number, a string, a Spec, a dataclass or a container of those; a tensor comes back as a NumPy array, and
anything else (a model, a trainer, a context manager) stays in that process and comes back as a Remote, whose
methods run there too and which goes back as the object itself when passed to a function. So the functions every
twin is tested through (build, get_weights, set_weights, predict, loss_and_grads ...) work on it unchanged. The
child lets go of an object once no Remote of it is left here (told with the next request), so a long session
holds there only what it still uses.

A request and its answer are pickles on the child's stdin and on a copy of its stdout (whatever else it prints
goes to stderr). The child ends when its stdin closes: when this process ends, however it ends.
"""

from __future__ import annotations

import atexit
import dataclasses
import inspect
import os
import pickle
import subprocess
import sys
import traceback
from dataclasses import dataclass

import numpy as np

from .. import childlogs
from ..errors import ProcessFailed, UserError
from ..spec import Spec

_PLAIN = (type(None), bool, int, float, complex, str, bytes, np.ndarray, np.generic, Spec)


@dataclass(frozen=True)
class Handle:
    """An object held in the twin's process, by its key there."""

    key: int


class IsolatedFailure(ProcessFailed):
    """The twin's process raised what is no bad input (a bug there, whose traceback the message holds), or died."""


class Remote:
    """An object in the twin's process: its methods run there."""

    def __init__(self, process: "TwinProcess", handle: Handle):
        self._process, self._handle = process, handle

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return self._process.get(self._handle, attribute, owner=self)

    def __call__(self, *args, **kwargs):  # a function the twin's module returned (a predictor)
        return self._process.call(self._handle, "__call__", args, kwargs)

    def __enter__(self):
        return self._process.call(self._handle, "__enter__", (), {})

    def __exit__(self, *failure):
        return self._process.call(self._handle, "__exit__", (None, None, None), {})

    def __repr__(self) -> str:
        return f"<{self._process.name} object {self._handle.key} in process {self._process.pid}>"

    def __del__(self):
        self._process.released.append(self._handle.key)  # only appended here: a request may be on its way


class TwinProcess:
    """The backend module ``name``, answered by a process of its own."""

    def __init__(self, name: str):
        self.name = name
        self._logs = childlogs.ChildLogs(f"twincnn-{name}-")
        self._child = self._logs.popen([sys.executable, "-m", __name__, name], name, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)
        self.pid = self._child.pid
        self._cache = {}
        self.released: list[int] = []  # keys of held objects whose Remotes are gone, sent with the next request
        atexit.register(self.close)

    def __getattr__(self, attribute: str):
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        if attribute not in self._cache:
            self._cache[attribute] = self.get(None, attribute)
        return self._cache[attribute]

    def get(self, handle: Handle | None, attribute: str, owner: Remote | None = None):
        """The attribute of the module (handle None) or of a held object: its value, or a function calling it (which
        keeps ``owner``, the held object's Remote, and so the object, alive)."""
        kind, value = self._request(("get", handle, attribute, (), {}))
        if kind == "callable":  # the function refers to owner, not only to its handle, to keep it
            return lambda *args, **kwargs: self.call(owner._handle if owner else handle, attribute, args, kwargs)
        return value

    def held(self) -> int:
        """How many objects the twin's process holds for this one."""
        return self._request(("held", None, None, (), {}))[1]

    def apply(self, function):
        """``function(module)`` run in the twin's process on its backend module: a module-level function of
        twincnn's (it crosses by name), such as interface.conformance."""
        return self._request(("apply", None, function, (), {}))[1]

    def call(self, handle: Handle | None, attribute: str, args: tuple, kwargs: dict):
        return self._request(("call", handle, attribute, self._sent(args), self._sent(kwargs)))[1]

    def _sent(self, value):
        if isinstance(value, Remote):
            return value._handle
        if isinstance(value, (list, tuple)):
            return type(value)(self._sent(v) for v in value)
        if isinstance(value, dict):
            return {k: self._sent(v) for k, v in value.items()}
        return value

    def _received(self, value):
        if isinstance(value, Handle):
            return Remote(self, value)
        if isinstance(value, (list, tuple)):
            return type(value)(self._received(v) for v in value)
        if isinstance(value, dict):
            return {k: self._received(v) for k, v in value.items()}
        return value

    def _request(self, request: tuple):
        if self._child.poll() is not None:
            self._died()
        released, self.released = self.released, []
        try:
            pickle.dump((*request, released), self._child.stdin)
            self._child.stdin.flush()
            status, value = pickle.load(self._child.stdout)
        except (BrokenPipeError, EOFError):
            self._died()
        if status == "no_attribute":
            raise AttributeError(value)
        if status == "user_error":
            raise UserError(value)
        if status == "value_error":  # the interface's word for bad input: an option, a file; its traceback as cause
            message, trace = value
            raise ValueError(message) from IsolatedFailure(f"in the {self.name} twin's process:\n{trace}")
        if status == "bug":
            raise IsolatedFailure(f"the {self.name} twin's process raised:\n{value}")
        return status, self._received(value)

    def _died(self):
        code = self._child.wait()
        raise IsolatedFailure(f"the {self.name} twin's process exited with code {code}; it wrote:\n"
                              f"{self._logs.text(self.name)[-4000:]}")

    def close(self) -> None:
        """End the process (it exits when its stdin closes)."""
        if self._child.poll() is None:
            self._child.stdin.close()
            try:
                self._child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
        self._logs.close()
        _STARTED.pop(self.name, None)


_STARTED: dict[str, TwinProcess] = {}


def start(name: str) -> TwinProcess:
    """The twin ``name`` in its own process, started once per process that asks for it."""
    if name not in _STARTED:
        _STARTED[name] = TwinProcess(name)
    return _STARTED[name]


# -- the twin's side ------------------------------------------------------------------------------------------

def _answerable(value, objects: dict):
    """``value`` as it crosses: plain values as they are, tensors as arrays, other objects kept here as Handles
    (objects: key -> [the object, how many Remotes of it the parent holds])."""
    if isinstance(value, _PLAIN) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return value  # a dataclass of twincnn's (a TrainerConfig) crosses as it is
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(_answerable(v, objects) for v in value)
    if type(value) is dict:
        return {k: _answerable(v, objects) for k, v in value.items()}
    if hasattr(value, "__array__") and not callable(value):  # a framework's tensor
        return np.asarray(value.detach() if hasattr(value, "detach") else value)
    objects.setdefault(id(value), [value, 0])[1] += 1
    return Handle(id(value))


def _resolved(value, objects: dict):
    if isinstance(value, Handle):
        return objects[value.key][0]
    if isinstance(value, (list, tuple)):
        return type(value)(_resolved(v, objects) for v in value)
    if isinstance(value, dict):
        return {k: _resolved(v, objects) for k, v in value.items()}
    return value


def _release(objects: dict, keys: list[int]) -> None:
    for key in keys:
        objects[key][1] -= 1
        if not objects[key][1]:
            del objects[key]


def _answer(backend, objects: dict, request: tuple) -> tuple:
    kind, handle, attribute, args, kwargs, released = request
    _release(objects, released)
    if kind == "held":
        return "ok", len(objects)
    if kind == "apply":
        return "ok", _answerable(attribute(backend), objects)
    target = backend if handle is None else objects[handle.key][0]
    if not hasattr(target, attribute):
        return "no_attribute", f"{type(target).__name__} {getattr(target, '__name__', '')} has no {attribute!r}"
    value = getattr(target, attribute)
    if kind == "get":  # a function, method or class is called there; a callable object (a model) is held there
        return ("callable", None) if inspect.isroutine(value) or isinstance(value, type) else (
            "ok", _answerable(value, objects))
    return "ok", _answerable(value(*_resolved(args, objects), **_resolved(kwargs, objects)), objects)


def serve(name: str) -> int:
    from .. import backends, quiet

    quiet.start()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else writes to stdout lands on stderr
    requests = sys.stdin.buffer
    backend, objects = backends.load(name), {}
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:  # the parent closed stdin, or ended
            return 0
        try:
            reply = _answer(backend, objects, request)
        except UserError as exc:
            reply = ("user_error", str(exc))
        except ValueError as exc:
            reply = ("value_error", (str(exc), traceback.format_exc()))
        except Exception:  # a bug, or a failed assertion: its traceback goes to the caller, who raises it
            reply = ("bug", traceback.format_exc())
        pickle.dump(reply, answers)
        answers.flush()


if __name__ == "__main__":  # run as the package's module, so that a Handle pickles as twincnn's
    from twincnn.backends.isolated import serve as serve_here

    sys.exit(serve_here(sys.argv[1]))
