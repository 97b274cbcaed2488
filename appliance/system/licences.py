"""Licences of the software bundled into the appliance (shown on the About page).

`build.py` writes `licences.json` next to this module from the locked runtime
packages and npm assets; it is package data, so the frozen binary carries it.
Without the file (a checkout that never ran build.py) the list is read from the
installed distributions.
"""

from __future__ import annotations

import json
from importlib import metadata, resources
from importlib.metadata import PackageMetadata

import msgspec


class Licence(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    licence: str


def _first(meta: PackageMetadata, name: str) -> str:
    """The first value of a metadata field, "" when absent (what Message.get gave, minus the None)."""
    values = meta.get_all(name)
    return str(values[0]) if values else ""


def _from_metadata() -> list[Licence]:
    found = []
    for dist in metadata.distributions():
        meta = dist.metadata
        licence = _first(meta, "License-Expression") or _first(meta, "License")
        if not licence or len(licence) > 80:
            classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                           if c.startswith("License ::")]
            licence = ", ".join(classifiers) or "see package"
        found.append(Licence(name=meta["Name"], version=dist.version, licence=licence))
    return sorted(found, key=lambda lic: lic.name.lower())


def bundled() -> list[Licence]:
    try:
        data = resources.files("appliance.system").joinpath("licences.json").read_text()
    except (FileNotFoundError, OSError):
        return _from_metadata()
    return [Licence(**item) for item in json.loads(data)]
