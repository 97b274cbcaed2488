"""Numbered, forward-only schema migrations (STORE-4).

Migrations are package data, `appliance/store/migrations/NNNN_name.sql`, read through
`importlib.resources` so a frozen build carries them. Applied versions are recorded in
`schema_migrations(version, name, applied_at)`.

Invariants (what must never happen):
- A migration is applied twice, out of order, or partly: all pending migrations and
  their records go in ONE transaction; any failure rolls every one of them back.
- Software runs against a schema it does not know: a database that records a version
  this code lacks is refused with `MigrationError` (forward only, no downgrade).
- An existing database is migrated without a way back: under the write lock, before any
  change, the caller's `snapshot(dest)` writes a consistent encrypted copy to
  `<db>.pre-NNNN` (NNNN = first pending version); only the newest snapshot is kept.

Migration SQL must not contain BEGIN/COMMIT/ROLLBACK, SAVEPOINT, ATTACH or PRAGMA
settings: an authorizer refuses them (a COMMIT inside would split the one transaction).
Foreign keys are off during migration and checked with `foreign_key_check` before COMMIT.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from appliance.store.atomic import fsync_dir
from appliance.store.driver import complete_statement
from appliance.store.errors import MigrationError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# SQLite authorizer codes (stable C ABI): transaction, attach, detach, savepoint; pragma; deny.
_DENIED_ACTIONS = frozenset({22, 24, 25, 32})
_PRAGMA, _DENY = 19, 1

class MigrationRun(NamedTuple):
    """What one run applies, as an `on_migrate` hook sees it (inside the migration's transaction)."""

    before: list[int]  # the versions applied before this run; empty for a new database
    applied: list[Migration]


# Called with the migration's connection after the migrations ran, before COMMIT: what it writes
# commits with them, and if it raises nothing is applied (the composition root records
# store.migrate this way; the store itself imports no capability).
OnMigrate = Callable[[Any, MigrationRun], None]

_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at REAL    NOT NULL
)"""


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    folder = resources.files("appliance.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
        elif entry.name.endswith(".sql"):
            raise MigrationError(f"migration file {entry.name} is not named NNNN_name.sql")
    return _ordered(found)


def migrate(conn: Any, migrations: Sequence[Migration] | None = None, *,
            snapshot: Callable[[Path], None] | None = None, on_migrate: OnMigrate | None = None) -> list[int]:
    """Apply the pending `migrations` (default: the packaged ones) on `conn`; return their versions.

    `conn` is a raw connection in autocommit mode with no transaction open; its authorizer
    is replaced during the call and removed afterwards (`Database.open` calls this on a
    set-up connection that it closes afterwards). `snapshot(dest)` must write a consistent
    copy of the database to `dest` through another connection; it is called while `conn`
    holds the write lock, when the database already has migrations and some are pending.
    `on_migrate(conn, run)` runs in the same transaction, after the migrations (see OnMigrate).
    """
    known = _ordered(load_migrations() if migrations is None else list(migrations))
    applied = _applied(conn)
    newest_known = known[-1].version if known else 0
    unknown = sorted(set(applied) - {m.version for m in known})
    if unknown:
        raise MigrationError(
            f"the database has schema version {max(unknown)}, newer than this software knows"
            f" (up to {newest_known}); install a newer release or restore a backup"
        )
    pending = [m for m in known if m.version not in applied]
    if not pending:
        return []
    if applied and pending[0].version < max(applied):
        raise MigrationError(
            f"migration {pending[0].version:04d} is older than the database's schema version"
            f" {max(applied)} and was never applied; this software does not match the database"
        )
    db_file = _main_file(conn)
    # Foreign keys off while the schema changes (SQLite's table-rebuild procedure needs it;
    # the pragma is a no-op inside a transaction), checked in full before COMMIT instead.
    conn.execute("PRAGMA foreign_keys = OFF")
    guard = _MigrationGuard()
    conn.set_authorizer(guard)
    try:
        try:
            conn.execute("BEGIN IMMEDIATE -- outpost migrate")
            if applied and db_file and snapshot is not None:
                _take_snapshot(snapshot, db_file.with_name(f"{db_file.name}.pre-{pending[0].version:04d}"))
            _apply(conn, pending, guard)
            if on_migrate is not None:
                on_migrate(conn, MigrationRun(before=sorted(applied), applied=pending))
            conn.execute("COMMIT -- outpost migrate")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK -- outpost migrate")
            if isinstance(exc, MigrationError):
                raise
            raise MigrationError(f"database migration failed and was rolled back: {exc}") from exc
    finally:
        conn.set_authorizer(None)
        conn.execute("PRAGMA foreign_keys = ON")
    return [m.version for m in pending]


def _apply(conn: Any, pending: list[Migration], guard: _MigrationGuard) -> None:
    """Run the pending migrations and record them, inside the caller's transaction."""
    conn.execute(_CREATE_TABLE)
    for m in pending:
        guard.active = True
        try:
            for statement in _statements(m):
                conn.execute(statement)
        except Exception as exc:
            raise MigrationError(
                f"migration {m.version:04d}_{m.name} failed ({exc}); no pending migration was applied"
            ) from exc
        finally:
            guard.active = False
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (m.version, m.name, time.time()),
        )
    broken = conn.execute("PRAGMA foreign_key_check").fetchone()
    if broken:
        raise MigrationError(f"the migrations leave a broken reference in table {broken[0]}")


class _MigrationGuard:
    """Authorizer: migration SQL may not end the transaction, ATTACH files or set PRAGMAs."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False

    def __call__(self, action: int, _arg1: Any, arg2: Any, _db: Any, _trigger: Any) -> int:
        if self.active and (action in _DENIED_ACTIONS or (action == _PRAGMA and arg2 is not None)):
            return _DENY
        return 0


def _ordered(found: list[Migration]) -> list[Migration]:
    found = sorted(found, key=lambda m: m.version)
    for before, after in zip(found, found[1:], strict=False):
        if before.version == after.version:
            raise MigrationError(f"two migrations share version {after.version:04d}")
    return found


def _applied(conn: Any) -> dict[int, str]:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return {}
    return {row[0]: row[1] for row in conn.execute("SELECT version, name FROM schema_migrations")}


def _main_file(conn: Any) -> Path | None:
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main" and row[2]:
            return Path(row[2])
    return None  # in-memory database: nothing to snapshot


def _take_snapshot(snapshot: Callable[[Path], None], dest: Path) -> None:
    # We hold the write lock and have changed nothing yet, so the copy is exactly the
    # pre-migration state; other connections can still read (WAL), which is all a copy needs.
    try:
        snapshot(dest)
        for old in dest.parent.glob(dest.name.rsplit(".pre-", 1)[0] + ".pre-*"):
            if old != dest:
                old.unlink()
        fsync_dir(dest.parent)
    except Exception as exc:
        raise MigrationError(f"cannot snapshot the database before migrating: {exc}") from exc


def _statements(m: Migration) -> list[str]:
    """Split a script into statements (executescript would COMMIT the open transaction)."""
    statements, buffer = [], ""
    *pieces, tail = m.sql.split(";")
    for piece in pieces:
        buffer += piece + ";"
        if complete_statement(buffer):
            statements.append(buffer)
            buffer = ""
    rest = "\n".join(line for line in (buffer + tail).splitlines() if not line.strip().startswith("--"))
    if rest.strip():
        raise MigrationError(f"migration {m.version:04d}_{m.name} ends with an incomplete statement")
    return statements
