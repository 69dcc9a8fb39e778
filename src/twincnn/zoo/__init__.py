"""Specs shipped with twincnn, one JSON file each: `--spec zoo:NAME` wherever a spec is accepted."""

from __future__ import annotations

import json
from importlib import resources

from ..spec import DEFAULT_SPEC, Spec, SpecError

PREFIX = "zoo:"


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


def load_spec(path=None, input_shape: tuple | None = None) -> Spec:
    """What a --spec option names: the notebook's CNN (None), a zoo spec ("zoo:NAME") or a JSON spec file;
    ``input_shape`` (the data's images) stands in where the file names none."""
    if path is None:
        return DEFAULT_SPEC
    if str(path).startswith(PREFIX):
        return load(str(path)[len(PREFIX):])
    return Spec.load(path, input_shape)
