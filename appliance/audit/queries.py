"""SQL for the audit log. The only audit module with SQL text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from appliance.audit.events import Event
from appliance.audit.models import AuditFilter, AuditRecord

if TYPE_CHECKING:
    from appliance.store.connection import Connection

_COLUMNS = "seq, ts, code, action, actor_type, actor, source, target, outcome, details, prev_hash, hash"


def insert_record(conn: Connection, *, seq, ts, code, action, actor_type, actor, source, target, outcome, details,
                  prev_hash, hash) -> None:
    # seq is explicit: it is part of the hashed content, so SQLite must not pick it.
    conn.execute(
        "INSERT INTO audit_log (seq, ts, code, action, actor_type, actor, source, target, outcome, details,"
        " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, ts, code, action, actor_type, actor, source, target, outcome, details, prev_hash, hash),
    )


def next_seq_and_prev_hash(conn: Connection) -> tuple[int, bytes | None]:
    """The seq the next record will get and the hash it chains from (None: start of chain)."""
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    if row is not None:
        return row[0] + 1, bytes(row[1])
    cp = conn.execute("SELECT seq, hash FROM audit_checkpoint WHERE id = 1").fetchone()
    if cp is not None:
        return cp[0] + 1, bytes(cp[1])
    return 1, None


def get_checkpoint(conn: Connection) -> tuple[int, bytes] | None:
    row = conn.execute("SELECT seq, hash FROM audit_checkpoint WHERE id = 1").fetchone()
    return (row[0], bytes(row[1])) if row else None


def _where(f: AuditFilter) -> tuple[str, list[float | str]]:
    clauses: list[str] = []
    args: list[float | str] = []
    if f.since is not None:
        clauses.append("ts >= ?")
        args.append(f.since)
    if f.until is not None:
        clauses.append("ts < ?")
        args.append(f.until)
    if f.actor:
        clauses.append("actor = ?")
        args.append(f.actor)
    if f.action:
        # prefix match on the dotted name: "auth" matches auth.login.success
        clauses.append("(action = ? OR action LIKE ? ESCAPE '\\')")
        escaped = f.action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args += [f.action, escaped + ".%"]
    if f.outcome:
        clauses.append("outcome = ?")
        args.append(f.outcome)
    if f.target:
        clauses.append("instr(target, ?) > 0")
        args.append(f.target)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _record(row) -> AuditRecord:
    return AuditRecord(seq=row[0], ts=row[1], code=row[2], action=row[3], actor_type=row[4], actor=row[5],
                       source=row[6], target=row[7], outcome=row[8], details=row[9],
                       prev_hash=bytes(row[10]), hash=bytes(row[11]))


def list_records(conn: Connection, f: AuditFilter, *, limit: int, offset: int) -> list[AuditRecord]:
    where, args = _where(f)
    rows = conn.execute(f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                        (*args, limit, offset)).fetchall()
    return [_record(r) for r in rows]


def count_records(conn: Connection, f: AuditFilter) -> int:
    where, args = _where(f)
    return conn.execute(f"SELECT count(*) FROM audit_log{where}", args).fetchone()[0]


def iter_records(conn: Connection, f: AuditFilter, *, batch: int = 2000) -> Iterator[list[tuple]]:
    """Raw rows in seq order, in batches, for export and verification (constant memory)."""
    where, args = _where(f)
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: callers unpack by position; Row objects cost ~10 %
    cur.execute(f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY seq", args)
    while rows := cur.fetchmany(batch):
        yield rows


def list_records_before(conn: Connection, f: AuditFilter, *, limit: int,
                        before: int | None = None) -> list[AuditRecord]:
    """Newest first, keyset-paginated: records with seq < before (API cursor; stable under inserts)."""
    where, args = _where(f)
    if before is not None:
        where += (" AND " if where else " WHERE ") + "seq < ?"
        args.append(before)
    rows = conn.execute(f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
    return [_record(r) for r in rows]


LOGIN_ACTIONS = (Event.AUTH_LOGIN_SUCCESS.action, Event.AUTH_LOGIN_FAILURE.action)


def count_logins_by(conn: Connection, column: str, *, since: float, until: float,
                    limit: int) -> list[tuple[str, int, int]]:
    """(actor or source, successes, failures) of login attempts in [since, until), most failures first (AUDIT-5)."""
    group = {"actor": "actor", "source": "source"}[column]  # fixed column names only, never user input
    rows = conn.execute(
        f"SELECT {group}, sum(outcome = 'success'), sum(outcome <> 'success') FROM audit_log"
        " WHERE action IN (?, ?) AND ts >= ? AND ts < ?"
        f" GROUP BY {group} ORDER BY 3 DESC, 2 DESC, 1 LIMIT ?", (*LOGIN_ACTIONS, since, until, limit)).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def count_logins_by_pair(conn: Connection, *, since: float, until: float,
                         limit: int) -> list[tuple[str, str, int, int]]:
    """(actor, source, successes, failures) of login attempts in [since, until), most failures first."""
    rows = conn.execute(
        "SELECT actor, source, sum(outcome = 'success'), sum(outcome <> 'success') FROM audit_log"
        " WHERE action IN (?, ?) AND ts >= ? AND ts < ?"
        " GROUP BY actor, source ORDER BY 4 DESC, 3 DESC, 1, 2 LIMIT ?",
        (*LOGIN_ACTIONS, since, until, limit)).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def count_all_records(conn: Connection) -> int:
    """Rows in the audit log (metrics); cheap: max(seq) - min(seq) + 1, since rows are only appended
    or purged from the start."""
    r = conn.execute("SELECT min(seq), max(seq) FROM audit_log").fetchone()
    return 0 if r[0] is None else r[1] - r[0] + 1
