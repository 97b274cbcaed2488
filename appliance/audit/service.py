"""`AuditService`: the one way the rest of the appliance writes and exports audit records.

Three ways in, one per kind of thing that happened:
- `record(conn, event, ...)`: a change, recorded with the caller's write connection inside the
  change's own transaction, so both commit or neither does (fail closed; audit/log.py).
- `record_refusal(event, ...)`: a refusal or failure that changed nothing, recorded in a
  transaction of its own (`db.write`). `record_alone(event, ...)` is the same for what changed
  nothing in the database yet succeeded: a read (a download, a report), a test run against a device,
  or a change to files outside the database (certificates, update slots) recorded right after it.
  Never use either for a change to the database: it could commit without its record.
- `export(actor, filter, fmt, ...)`: records the export, then streams it. The UI, the API and the
  CLI all export through it; if the record cannot be written there is no export.
- `record_migration(conn, run)`: store.migrate, written by `Database.open` inside the migration's
  own transaction (its `on_migrate` hook, passed in by app.open_database), before any service exists.

Callers name events with `audit.events.Event` members, never strings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from appliance.audit import export as export_format
from appliance.audit import log
from appliance.audit.events import Event
from appliance.audit.models import Actor, AuditFilter, Outcome

if TYPE_CHECKING:
    from appliance.clock import Clock
    from appliance.store.connection import Connection, Database
    from appliance.store.migrate import MigrationRun

ExportFormat = Literal["csv", "jsonl"]
_MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


@dataclass(frozen=True, kw_only=True)
class AuditExport:
    """An export whose record is written; `chunks()` streams it (constant memory)."""

    filename: str
    media_type: str
    chunks: Callable[[], Iterator[bytes]]


class AuditService:
    """Audit records through one database and one clock (see the module docstring)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def record(self, conn: Connection, event: Event, *, actor: Actor, ts: float | None = None,
               outcome: Outcome = "success", target: str = "", details: dict | None = None) -> int:
        """Record `event` in the caller's transaction (`conn` is its write connection); returns the seq."""
        return log.record(conn, event, ts=self._clock.now() if ts is None else ts, actor=actor, outcome=outcome,
                          target=target, details=details)

    async def record_refusal(self, event: Event, *, actor: Actor, outcome: Outcome = "denied",
                             ts: float | None = None, target: str = "", details: dict | None = None) -> int:
        """Record a refusal or failure that changed nothing, in its own transaction; returns the seq."""
        _check_refused(outcome)
        return await self.record_alone(event, actor=actor, outcome=outcome, ts=ts, target=target, details=details)

    def record_refusal_sync(self, event: Event, *, actor: Actor, outcome: Outcome = "denied",
                            ts: float | None = None, target: str = "", details: dict | None = None) -> int:
        """`record_refusal` for callers outside the event loop (CLI, worker threads)."""
        _check_refused(outcome)
        return self.record_alone_sync(event, actor=actor, outcome=outcome, ts=ts, target=target, details=details)

    async def record_alone(self, event: Event, *, actor: Actor, outcome: Outcome = "success",
                           ts: float | None = None, target: str = "", details: dict | None = None) -> int:
        """Record something that changed nothing in the database, in its own transaction; returns the seq."""
        when = self._clock.now() if ts is None else ts
        return await self._db.write(lambda conn: log.record(conn, event, ts=when, actor=actor, outcome=outcome,
                                                            target=target, details=details))

    def record_alone_sync(self, event: Event, *, actor: Actor, outcome: Outcome = "success",
                          ts: float | None = None, target: str = "", details: dict | None = None) -> int:
        """`record_alone` for callers outside the event loop (CLI, worker threads)."""
        when = self._clock.now() if ts is None else ts
        return self._db.write_sync(lambda conn: log.record(conn, event, ts=when, actor=actor, outcome=outcome,
                                                           target=target, details=details))

    async def export(self, actor: Actor, flt: AuditFilter, fmt: ExportFormat, *, via: str,
                     shown: dict[str, str] | None = None) -> AuditExport:
        """Record the export (format, channel and the filter as given in `shown`), then return its stream."""
        now = self._clock.now()
        await self.record_alone(Event.AUDIT_EXPORT, actor=actor, ts=now, details=_export_details(fmt, via, shown))
        return self._stream(flt, fmt, now)

    def export_sync(self, actor: Actor, flt: AuditFilter, fmt: ExportFormat, *, via: str,
                    shown: dict[str, str] | None = None) -> AuditExport:
        """`export` for the CLI."""
        now = self._clock.now()
        self.record_alone_sync(Event.AUDIT_EXPORT, actor=actor, ts=now, details=_export_details(fmt, via, shown))
        return self._stream(flt, fmt, now)

    def _stream(self, flt: AuditFilter, fmt: ExportFormat, now: float) -> AuditExport:
        write = export_format.csv_chunks if fmt == "csv" else export_format.jsonl_chunks
        db = self._db

        def chunks() -> Iterator[bytes]:
            with db.reader() as conn:
                yield from write(conn, flt)

        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        return AuditExport(filename=f"outpost-audit-{stamp}.{fmt}", media_type=_MEDIA_TYPES[fmt], chunks=chunks)


def record_migration(conn: Connection, run: MigrationRun) -> None:
    """Record a schema upgrade in the migration's transaction: no record, no upgrade (fail closed).
    A new database (nothing applied before) is created, not migrated, and is not recorded."""
    if not run.before:
        return
    log.record(conn, Event.STORE_MIGRATE, ts=time.time(), actor=Actor.system(),
               details={"from_version": max(run.before), "to_version": run.applied[-1].version,
                        "applied": [f"{m.version:04d}_{m.name}" for m in run.applied]})


def _export_details(fmt: str, via: str, shown: dict[str, str] | None) -> dict:
    return {"format": fmt, "via": via, **{k: v for k, v in (shown or {}).items() if v}}


def _check_refused(outcome: str) -> None:
    # A "success" here would also carry a pending api.write record (audit/apiwrite.py): use record_alone.
    if outcome == "success":
        raise ValueError("a refusal is recorded with outcome failure or denied")
