"""Trusted root keys, built into the binary as package data (appliance/updates/roots/*.pub).

A root's only job is to certify signing keys. The repository ships one DEVELOPMENT root
(development.pub, private key never committed); a production build replaces the
directory's content with the offline production root(s) (README, "Updates and the key
ceremony"). A binary that trusts only the development root says so in the UI.
"""

from __future__ import annotations

from importlib import resources

import msgspec

from appliance.crypto import signing

DEVELOPMENT = "development"


class Root(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    key_id: str
    public_key: bytes


class TrustStore(msgspec.Struct, frozen=True, kw_only=True):
    roots: tuple[Root, ...]

    def get(self, key_id: str) -> Root | None:
        return next((r for r in self.roots if r.key_id == key_id), None)

    @property
    def development_only(self) -> bool:
        return bool(self.roots) and all(r.name == DEVELOPMENT for r in self.roots)


def from_keys(named: dict[str, bytes]) -> TrustStore:
    return TrustStore(roots=tuple(Root(name=n, key_id=signing.key_id(k), public_key=k)
                                  for n, k in sorted(named.items())))


def builtin() -> TrustStore:
    """The roots packaged with this build (read through importlib.resources: freeze-friendly)."""
    folder = resources.files("appliance.updates").joinpath("roots")
    named = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".pub"):
            named[entry.name.removesuffix(".pub")] = signing.parse_public(entry.read_text(encoding="ascii"))
    return from_keys(named)
