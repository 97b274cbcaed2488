"""`api.write` records committed with the change they describe (AUDIT-2; issue 11, finding 21).

The API gate (web/apiauth.py) opens an `ApiWrite` for each state-changing request made
with a key and sets it in `CURRENT` for the request's duration. Write jobs run in their
caller's context (store/connection.py copies it into the writer thread), so the first
successful audit record a job of that request writes (`log.record`, outcome "success":
a change) also writes the `api.write` record, with the same connection, in the same
transaction: both commit, or neither, before any response is sent.

A request that changes nothing (refused, failed, or a no-op) gets its `api.write`
afterwards, with the response status, in a transaction of its own (the gate does that).

Invariant: a change made with an API key is never committed without its api.write record.
"""

from __future__ import annotations

from contextvars import ContextVar

from appliance.audit.models import Actor


class ApiWrite:
    """One state-changing API request; `seq` is set once its record was written in a change's
    transaction (the gate still writes one after the response if the request failed)."""

    __slots__ = ("actor", "target", "method", "path", "seq")

    def __init__(self, *, actor: Actor, target: str, method: str, path: str) -> None:
        self.actor, self.target, self.method, self.path = actor, target, method, path
        self.seq: int | None = None

    def details(self, status: int | None = None) -> dict:
        base = {"method": self.method, "path": self.path[:200]}
        return base if status is None else {**base, "status": status}


CURRENT: ContextVar[ApiWrite | None] = ContextVar("outpost_api_write", default=None)
