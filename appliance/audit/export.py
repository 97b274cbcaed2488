"""Streaming export of audit records as CSV or JSON lines (AUDIT-4).

Invariants: constant memory (rows are read in batches and yielded as chunks);
every CSV cell that a spreadsheet could run as a formula (starting with =, +, -,
@, tab or carriage return) is prefixed with a single quote.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

import msgspec

from appliance.audit import queries
from appliance.audit.models import AuditFilter
from appliance.clock import iso

if TYPE_CHECKING:
    from appliance.store.connection import Connection

HEADER = ["seq", "time_utc", "code", "action", "actor_type", "actor", "source", "target", "outcome", "details", "hash"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_encode = msgspec.json.Encoder().encode


def neutralise(cell: str) -> str:
    """Make a cell inert in spreadsheet programs (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _row(r) -> list[str]:
    seq, ts, code, action, actor_type, actor, source, target, outcome, details, _prev, digest = r
    return [str(seq), iso(ts), code, action, actor_type, actor, source, target, outcome, details, bytes(digest).hex()]


def _csv_row(r) -> list[str]:
    """Like _row, neutralising only the cells outside input can reach (the others are ours)."""
    seq, ts, code, action, actor_type, actor, source, target, outcome, details, _prev, digest = r
    return [str(seq), iso(ts), code, action, actor_type, neutralise(actor), neutralise(source), neutralise(target),
            outcome, neutralise(details), bytes(digest).hex()]


def csv_chunks(conn: Connection, f: AuditFilter) -> Iterator[bytes]:
    """CSV bytes, one chunk per batch of rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER)
    for batch in queries.iter_records(conn, f):
        writer.writerows(_csv_row(r) for r in batch)
        yield buf.getvalue().encode("utf-8")
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode("utf-8")


def jsonl_chunks(conn: Connection, f: AuditFilter) -> Iterator[bytes]:
    """JSON lines bytes, one chunk per batch of rows; details stay a JSON string as hashed."""
    for batch in queries.iter_records(conn, f):
        yield b"".join(_encode(dict(zip(HEADER, _row(r), strict=True))) + b"\n" for r in batch)
