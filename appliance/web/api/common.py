"""Shared pieces of the REST API (API-1): the error shape, id bounds, time format.

Who is asking and the services to ask come from web/deps.py, as for the browser pages.

Handlers are thin: parse (msgspec Structs), call a capability service, return a Struct.
Errors are raised as OutpostError subclasses and rendered by web/errors.py in the one
shape `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.clock import iso

MAX_LIMIT = 500
# SQLite INTEGER: a larger id raised OverflowError in the driver (500), not 404. Give every integer
# parameter bounds; an optional one is `Annotated[int | None, Parameter(ge=..., le=...)]`, since
# Litestar ignores the bounds of `Annotated[int, Parameter(...)] | None`.
MAX_ID = 2**63 - 1


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every API error: a stable machine code, a plain-words message, and field details."""

    error: ErrorInfo


def when(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)
