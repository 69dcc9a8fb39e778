"""Framework start-up notices kept off the terminal in every twincnn process; failures still say why.

What is silenced, per framework, is named in its registry entry (backends.Registration) and applied here:

- ``quiet_environment``: the framework's own log variables at their quiet values, set before any framework
  starts, so every worker and rank inherits them. TensorFlow: TF_CPP_MIN_LOG_LEVEL=2 hides its C++ INFO and
  WARNING lines, among them the CPU-feature notice ("To enable the following instructions: AVX2 ... rebuild
  TensorFlow"); its C++ errors still show.
- ``quiet_imports``: packages whose native code writes notices while it loads, before it reads any variable.
  TensorFlow 2.21 writes absl's "All log messages before absl::InitializeLog() is called are written to
  STDERR" and the oneDNN notice ("oneDNN custom operations are on ...") whatever TF_CPP_MIN_LOG_LEVEL says
  (measured: 1, 2 and 3 all print them; TF_ENABLE_ONEDNN_OPTS=0 would, but it changes the kernels). So the
  first import of such a package, whoever asks for it (a user's file that imports Keras first included),
  runs with file descriptor 2 sent to a temporary file: dropped when the import succeeds, shown when it fails,
  since then it is what says why.

Nothing else is hidden here: Python warnings (a model's retracing, a deprecated argument) and the frameworks'
errors reach stderr as they are. (A compare's workers and ranks write their stderr to log files, which a
failure's line names: childlogs.py; that is also where JAX's gloo "[Gloo] Rank 0 is connected to 1 peer
ranks", written to stdout at the first collective, goes.) A user who set one of a framework's log variables to another value keeps
it, and that framework is not quieted at all. ``twincnn --verbose COMMAND`` quiets nothing and sets no
framework variable; TWINCNN_VERBOSE=1 carries that choice to the workers and ranks (or to
``python -m twincnn.parallel.rank`` under a cluster launcher).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys
import tempfile

from . import backends

VERBOSE = "TWINCNN_VERBOSE"


def start(verbose: bool | None = None) -> None:
    """Quiet every registered framework the user has not set up otherwise; call it before any framework or
    user code is imported. ``verbose``: the command line's choice, handed on to child processes; None: the
    one this process inherited."""
    if verbose is not None:
        os.environ[VERBOSE] = "1" if verbose else "0"
    if is_verbose():
        return
    packages = []
    for entry in backends.BACKENDS.values():
        if any(os.environ.get(name, value) != value for name, value in entry.quiet_environment.items()):
            continue  # the user's own setting: theirs to see
        os.environ.update(entry.quiet_environment)
        packages += [name for name in entry.quiet_imports if name not in sys.modules]
    if packages:
        hook = next((finder for finder in sys.meta_path if isinstance(finder, QuietImports)), None)
        if hook is None:
            hook = QuietImports()
            sys.meta_path.insert(0, hook)
        hook.packages.update(packages)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE) == "1"


class QuietImports(importlib.abc.MetaPathFinder):
    """Finds each of its ``packages`` as the other finders do, and runs its first import under stderr_kept()."""

    def __init__(self):
        self.packages = set()

    def find_spec(self, name, path=None, target=None):
        if name not in self.packages:  # once imported, sys.modules answers before any finder is asked
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = QuietLoader(spec.loader)
                return spec
        return None


class QuietLoader:
    """A package's own loader (every attribute but exec_module passed through), its module executed with
    stderr kept aside."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # the package sees its own loader
        with stderr_kept():
            self.loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)


@contextlib.contextmanager
def stderr_kept():
    """File descriptor 2 (C++ and Python alike) into a temporary file meanwhile; what it caught is written to
    stderr only if the block raises an Exception (a Ctrl-C shows nothing)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        failed = False
        try:
            yield
        except Exception:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                caught.seek(0)
                sys.stderr.write(caught.read().decode(errors="replace"))
                sys.stderr.flush()
