"""Audit records and filters (no I/O)."""

from __future__ import annotations

from typing import Literal

import msgspec

Outcome = Literal["success", "failure", "denied"]
ActorType = Literal["user", "api_key", "system", "anonymous"]


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who did it and from where."""

    type: ActorType
    name: str
    source: str

    @classmethod
    def system(cls) -> Actor:
        return cls(type="system", name="system", source="local")


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    ts: float
    code: str
    action: str
    actor_type: str
    actor: str
    source: str
    target: str
    outcome: str
    details: str
    prev_hash: bytes
    hash: bytes


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What the audit view and export select; empty fields match everything."""

    since: float | None = None
    until: float | None = None
    actor: str = ""
    action: str = ""
    outcome: str = ""
    target: str = ""


class ChainReport(msgspec.Struct, frozen=True, kw_only=True):
    """Result of verifying the hash chain; first_bad is the seq of the first broken record."""

    ok: bool
    checked: int
    first_bad: int | None = None
    reason: str = ""
