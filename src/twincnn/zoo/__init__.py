"""Specs shipped with twincnn, one JSON file each: `--spec zoo:NAME` wherever a spec is accepted."""

from __future__ import annotations

import json
from importlib import resources

from ..spec import Spec, SpecError


def names() -> list[str]:
    return sorted(entry.name[:-len(".json")] for entry in resources.files(__name__).iterdir()
                  if entry.name.endswith(".json"))


def load(name: str) -> Spec:
    """The zoo spec ``name``; SpecError listing the names if there is none such."""
    if name not in names():
        raise SpecError(f"unknown zoo spec {name!r}; choose from {', '.join(names())}")
    try:
        return Spec.from_dict(json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text()))
    except SpecError as exc:
        raise SpecError(f"zoo:{name}: {exc}") from None
