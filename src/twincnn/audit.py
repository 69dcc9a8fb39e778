"""`twincnn audit`: every default where the frameworks differ for this model and that changes
results or timing. One column per registered framework, read from the installed framework (each backend's audit_defaults())."""

from __future__ import annotations

from . import backends
from .backends import defaults
from .tables import render

NOT_INSTALLED = "(not installed)"
UNKNOWN = "n/a"  # an installed framework whose reader does not know this setting


def audit_rows() -> list[list[str]]:
    """One row per setting: its name, each registered framework's default, the notebook's, the fair protocol's."""
    values = {}
    for name in backends.BACKENDS:
        try:
            values[name] = defaults.read(name)
        except backends.FrameworkMissing:
            values[name] = None
    return [[setting, *(NOT_INSTALLED if values[name] is None else values[name].get(key, UNKNOWN)
                        for name in backends.BACKENDS), notebook, fair]
            for key, setting, notebook, fair in defaults.ROWS]


def audit_table(markdown: bool = False) -> str:
    headers = ["setting", *(f"{entry.label} default" for entry in backends.BACKENDS.values()),
               "notebook used", "twincnn fair protocol"]
    return render(headers, audit_rows(), markdown=markdown)
