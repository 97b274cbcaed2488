"""Migrations: applied once in one transaction, recorded, snapshotted, forward only."""

from __future__ import annotations

import stat

import pytest

from appliance.store import Database, Migration, MigrationError, StoreError, load_migrations

M1 = Migration(1, "first", "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT NOT NULL);")
M2 = Migration(2, "second", "-- adds b; with a comment holding a semicolon\nCREATE TABLE b (id INTEGER PRIMARY KEY);\n")
M3 = Migration(3, "third", "CREATE TABLE c (id INTEGER);\nCREATE INDEX c_id ON c (id);")


def _tables(db) -> set[str]:
    return db.read_sync(lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")})


def _versions(db) -> list[tuple[int, str]]:
    return db.read_sync(lambda c: [(r["version"], r["name"]) for r in c.execute(
        "SELECT version, name FROM schema_migrations ORDER BY version")])


def test_packaged_migrations_are_found_in_order():
    migrations = load_migrations()
    assert [(m.version, m.name) for m in migrations][:1] == [(1, "initial")]
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert "CREATE TABLE audit_log" in migrations[0].sql


def test_real_schema_applied_once_and_recorded(db_path, key):
    packaged = [(m.version, m.name) for m in load_migrations()]
    with Database.open(db_path, key) as db:
        assert _versions(db) == packaged and packaged[0] == (1, "initial")
        assert {"audit_log", "users", "sessions", "roles", "settings", "schema_migrations"} <= _tables(db)
        assert db.read_sync(lambda c: c.execute("SELECT count(*) FROM roles").fetchone()[0]) == 4
    with Database.open(db_path, key) as db:  # second open: nothing pending, nothing re-run
        assert _versions(db) == packaged
        assert db.read_sync(lambda c: c.execute("SELECT count(*) FROM roles").fetchone()[0]) == 4
    assert not list(db_path.parent.glob("*.pre-*"))  # a fresh database needs no snapshot


def test_new_migrations_snapshot_first_and_keep_only_the_last_snapshot(db_path, key):
    with Database.open(db_path, key, migrations=[M1]) as db:
        db.write_sync(lambda c: c.execute("INSERT INTO a (v) VALUES ('before')"))
    with Database.open(db_path, key, migrations=[M1, M2]) as db:
        assert _versions(db) == [(1, "first"), (2, "second")]
        assert "b" in _tables(db)
    snapshot = db_path.with_name("outpost.db.pre-0002")
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert snapshot.read_bytes()[:16] != b"SQLite format 3\x00"

    # The snapshot is the encrypted database as it was before migration 0002.
    copy = db_path.with_name("restored.db")
    copy.write_bytes(snapshot.read_bytes())
    with Database.open(copy, key, migrations=[M1]) as old:
        assert _versions(old) == [(1, "first")] and "b" not in _tables(old)
        assert old.read_sync(lambda c: c.execute("SELECT v FROM a").fetchone()[0]) == "before"

    with Database.open(db_path, key, migrations=[M1, M2, M3]) as db:
        assert [v for v, _ in _versions(db)] == [1, 2, 3]
    assert sorted(p.name for p in db_path.parent.glob("outpost.db.pre-*")) == ["outpost.db.pre-0003"]


def test_a_database_from_the_future_is_refused(db_path, key):
    Database.open(db_path, key, migrations=[M1, M2]).close()
    with pytest.raises(MigrationError, match="schema version 2, newer than this software knows"):
        Database.open(db_path, key, migrations=[M1])


def test_a_missing_older_migration_is_refused(db_path, key):
    Database.open(db_path, key, migrations=[M1, M3]).close()
    with pytest.raises(MigrationError, match="older than the database's schema version"):
        Database.open(db_path, key, migrations=[M1, M2, M3])


@pytest.mark.parametrize("bad_sql", [
    "CREATE TABLE c (id INTEGER);\nCREATE TABLE c (id INTEGER);",  # fails half-way
    "CREATE TABLE c (id INTEGER);\nCOMMIT;\nCREATE TABLE d (id INTEGER);",  # tries to split the transaction
    "CREATE TABLE c (id INTEGER);\nPRAGMA foreign_keys = OFF;",
    "CREATE TABLE c (id INTEGER);\nATTACH DATABASE ':memory:' AS other;",
    "CREATE TABLE c (id INTEGER REFERENCES a (id));\nINSERT INTO c VALUES (42);",  # dangling reference
    "CREATE TABLE c (id INTEGER)",  # no final semicolon
])
def test_pending_migrations_apply_all_or_nothing(db_path, key, bad_sql):
    Database.open(db_path, key, migrations=[M1]).close()
    with pytest.raises(MigrationError) as err:
        Database.open(db_path, key, migrations=[M1, M2, Migration(3, "bad", bad_sql)])
    assert isinstance(err.value, StoreError)
    with Database.open(db_path, key, migrations=[M1]) as db:
        assert _versions(db) == [(1, "first")]
        assert _tables(db) == {"a", "schema_migrations"}  # neither 0002 nor half of 0003


def test_duplicate_versions_are_refused(db_path, key):
    with pytest.raises(MigrationError, match="share version 0001"):
        Database.open(db_path, key, migrations=[M1, Migration(1, "again", "SELECT 1;")])
