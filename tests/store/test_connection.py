"""Database: encryption at rest, key and damage detection, error translation, reads, lifecycle."""

from __future__ import annotations

import asyncio
import os
import stat
import threading

import pytest

from appliance.errors import ConflictError, OutpostError
from appliance.store import (
    ConstraintError,
    CorruptDatabaseError,
    Database,
    StoreError,
    WrongKeyError,
)
from appliance.store import connection as connection_module

from .jobs import insert_setting, setting_names

SENTINEL = "OUTPOST-PLAINTEXT-SENTINEL-7f3c9b"


def _files_containing(directory, needle: bytes) -> list[str]:
    return [p.name for p in directory.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_no_plaintext_in_any_file_while_open_and_after_close(db, db_path):
    for i in range(200):  # enough to spill into several WAL frames and pages
        db.write_sync(insert_setting(f"{SENTINEL}-{i}", SENTINEL * 20))
    files = sorted(p.name for p in db_path.parent.iterdir())
    assert files == ["outpost.db", "outpost.db-shm", "outpost.db-wal"]
    for name in files:
        assert stat.S_IMODE((db_path.parent / name).stat().st_mode) == 0o600, name
    for needle in (SENTINEL.encode(), SENTINEL.encode("utf-16-le"), b"SQLite format 3", b"CREATE TABLE"):
        assert _files_containing(db_path.parent, needle) == []
    db.close()
    assert db_path.read_bytes()[:16] != b"SQLite format 3\x00"
    assert _files_containing(db_path.parent, SENTINEL.encode()) == []
    assert _files_containing(db_path.parent, b"audit_log") == []  # the schema is encrypted too


def test_rows_support_names_and_unpacking(db):
    db.write_sync(insert_setting("colour", "blue"))
    row = db.read_sync(lambda c: c.execute("SELECT key, value FROM settings WHERE key = ?", ("colour",)).fetchone())
    name, value = row
    assert (name, value) == ("colour", "blue") and row["value"] == "blue"


def test_wrong_key_is_refused_with_a_clear_message(db_path, key):
    Database.open(db_path, key).close()
    other = os.urandom(32)
    with pytest.raises(WrongKeyError) as err:
        Database.open(db_path, other)
    message = str(err.value)
    assert message.startswith(f"the database key does not open {db_path}: wrong key")
    assert key.hex() not in message and other.hex() not in message
    assert isinstance(err.value, StoreError) and isinstance(err.value, OutpostError)


def test_a_file_of_random_bytes_is_refused(db_path, key):
    db_path.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(WrongKeyError, match="not an Outpost database"):
        Database.open(db_path, key)


def _filled_closed_database(db_path, key) -> int:
    with Database.open(db_path, key) as db:
        for i in range(40):
            db.write_sync(lambda c, i=i: c.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?)", [(f"k{i}-{j}", "x" * 500) for j in range(10)]))
    assert not db_path.with_name("outpost.db-wal").exists()  # closing checkpointed everything
    return db_path.stat().st_size


@pytest.mark.parametrize("where", ["middle", "last_page", "one_byte"])
def test_damaged_database_stops_open_with_a_clear_message(db_path, key, where):
    size = _filled_closed_database(db_path, key)
    pages = size // 4096
    assert pages > 20
    offset, data = {
        "middle": ((pages // 2) * 4096 + 1000, os.urandom(64)),
        "last_page": ((pages - 1) * 4096 + 200, os.urandom(16)),
        "one_byte": ((pages // 3) * 4096 + 2048, None),
    }[where]
    with open(db_path, "r+b") as f:
        f.seek(offset)
        if data is None:
            data = bytes([f.read(1)[0] ^ 0x01])
            f.seek(offset)
        f.write(data)
    with pytest.raises(CorruptDatabaseError) as err:
        Database.open(db_path, key)
    assert str(err.value).startswith(f"the database {db_path} is damaged:")
    assert "will not use it" in str(err.value)


def test_truncated_database_is_refused(db_path, key):
    size = _filled_closed_database(db_path, key)
    with open(db_path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(CorruptDatabaseError, match="is damaged"):
        Database.open(db_path, key)


def test_damaged_first_page_is_refused(db_path, key):
    _filled_closed_database(db_path, key)
    with open(db_path, "r+b") as f:
        f.seek(100)
        f.write(os.urandom(32))
    with pytest.raises((WrongKeyError, CorruptDatabaseError)):  # SQLCipher cannot tell these apart on page 1
        Database.open(db_path, key)


def test_open_refuses_bad_arguments(db_path, key):
    with pytest.raises(StoreError, match="32 bytes"):
        Database.open(db_path, key[:16])
    with pytest.raises(StoreError, match="is missing"):
        Database.open(db_path, key, create=False)
    assert not db_path.exists()


def test_errors_are_translated_and_others_pass_through(db):
    db.write_sync(insert_setting("dup"))
    with pytest.raises(ConstraintError, match="UNIQUE constraint failed: settings.key") as err:
        db.write_sync(insert_setting("dup"))
    assert isinstance(err.value, ConflictError) and err.value.status == 409
    with pytest.raises(ConstraintError, match="FOREIGN KEY"):
        db.write_sync(lambda c: c.execute(
            "INSERT INTO users (username, role, password_hash, created_at, password_changed_at)"
            " VALUES ('a', 'no-such-role', 'h', 0, 0)"))
    with pytest.raises(StoreError) as err:
        db.write_sync(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))
    assert type(err.value) is StoreError and "no such table" in str(err.value)
    with pytest.raises(StoreError):
        db.read_sync(lambda c: c.execute("SELEC 1"))

    mine = OutpostError("refused by policy")

    def raise_mine(conn):
        raise mine

    with pytest.raises(OutpostError) as err:
        db.write_sync(raise_mine)
    assert err.value is mine
    with pytest.raises(ValueError):
        db.read_sync(lambda c: int("x"))


@pytest.mark.parametrize("statement", [
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT x",
    "ATTACH DATABASE ':memory:' AS plain",
    "PRAGMA synchronous = OFF",
    "PRAGMA foreign_keys = OFF",
    "PRAGMA key = 'x'",
])
def test_jobs_cannot_control_the_transaction_or_settings(db, statement):
    def job(conn):
        conn.execute("INSERT INTO settings (key, value) VALUES ('half', 'done')")
        conn.execute(statement)

    with pytest.raises(StoreError, match="only the store may"):
        db.write_sync(job)
    assert db.write_sync(insert_setting("after")) == 1
    assert db.read_sync(setting_names) == {"after"}
    assert db.read_sync(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
    assert db.read_sync(lambda c: [tuple(r) for r in c.execute("PRAGMA table_info(settings)")])  # introspection ok


def test_readers_cannot_write(db):
    with pytest.raises(StoreError, match="readonly"):
        db.read_sync(insert_setting("sneaky"))
    with pytest.raises(StoreError):
        db.read_sync(lambda c: c.execute("PRAGMA query_only = OFF"))

    async def inline():
        with pytest.raises(StoreError, match="readonly"):
            await db.read(insert_setting("sneaky"))

    asyncio.run(inline())
    assert db.read_sync(setting_names) == set()


def test_reads_see_acknowledged_writes_on_every_path(db):
    async def scenario():
        for i in range(20):
            await db.write(insert_setting(f"k{i}"))
            assert f"k{i}" in await db.read(setting_names)
        assert len(await db.read_in_thread(setting_names)) == 20
        return await db.read(lambda c: c.execute("SELECT count(*) FROM settings").fetchone()[0])

    assert asyncio.run(scenario()) == 20
    with db.reader() as conn:
        assert len(setting_names(conn)) == 20

    async def count_on_a_new_loop():  # a second event loop gets its own inline reader
        return await db.read(lambda c: c.execute("SELECT count(*) FROM settings").fetchone()[0])

    assert asyncio.run(count_on_a_new_loop()) == 20


def test_reader_context_translates_errors_and_returns_the_connection(db):
    for _ in range(10):  # more than the pool size: connections come back even after errors
        with pytest.raises(StoreError):
            with db.reader() as conn:
                conn.execute("SELECT * FROM nowhere")
    assert db.read_sync(lambda c: 1) == 1


def test_write_sync_from_inside_a_job_is_refused(db):
    with pytest.raises(StoreError, match="wait for itself"):
        db.write_sync(lambda c: db.write_sync(insert_setting("nested")))


def test_close_runs_every_queued_write_first(db_path, key):
    db = Database.open(db_path, key)
    gate = threading.Event()

    async def scenario():
        blocker = asyncio.ensure_future(db.write(lambda c: gate.wait(5)))
        writes = [asyncio.ensure_future(db.write(insert_setting(f"k{i}"))) for i in range(300)]
        await asyncio.sleep(0.05)  # every write is queued behind the blocked writer
        threading.Timer(0.1, gate.set).start()
        db.close()  # blocks until the writer drained the queue
        await asyncio.gather(blocker, *writes)
        with pytest.raises(StoreError, match="closed"):
            await db.write(insert_setting("late"))

    asyncio.run(scenario())
    with pytest.raises(StoreError, match="closed"):
        db.write_sync(insert_setting("late"))
    with Database.open(db_path, key) as again:
        assert len(again.read_sync(setting_names)) == 300


def test_pending_writes_are_bounded(db_path, key, monkeypatch):
    monkeypatch.setattr(connection_module, "MAX_PENDING", 8)
    gate = threading.Event()
    with Database.open(db_path, key) as db:
        async def scenario():
            blocker = asyncio.ensure_future(db.write(lambda c: gate.wait(5)))
            writes = [asyncio.ensure_future(db.write(insert_setting(f"k{i}"))) for i in range(100)]
            await asyncio.sleep(0.05)
            queued = db._writer.queued  # white-box: the bound is the point of this test
            gate.set()
            await asyncio.gather(blocker, *writes)
            return queued

        assert asyncio.run(scenario()) <= 8
        assert db.stats()["largest_batch"] <= 8
        assert len(db.read_sync(setting_names)) == 100


def test_size_and_path(db, db_path):
    assert db.path == db_path
    before = db.size_bytes()
    db.write_sync(lambda c: c.executemany("INSERT INTO settings VALUES (?, ?)", [(str(i), "x" * 1000) for i in range(100)]))
    assert db.size_bytes() > before > 0


def test_snapshot_is_a_consistent_encrypted_copy_taken_while_in_use(db, db_path, key):
    db.write_sync(insert_setting(SENTINEL, SENTINEL))
    dest = db_path.with_name("copy.db")

    async def scenario():
        writes = asyncio.gather(*(db.write(insert_setting(f"k{i}")) for i in range(500)))
        await asyncio.to_thread(db.snapshot, dest)
        await writes

    asyncio.run(scenario())
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert SENTINEL.encode() not in dest.read_bytes()
    assert sorted(p.name for p in db_path.parent.glob("*copy*")) == ["copy.db"]  # no temp left
    with Database.open(dest, key) as copy:  # passes quick_check and cipher_integrity_check
        names = copy.read_sync(setting_names)
    assert SENTINEL in names and len(names) <= 501
    with pytest.raises(WrongKeyError):
        Database.open(dest, os.urandom(32))


def test_a_cursor_returned_by_a_write_job_does_not_leak_out(db):
    assert db.write_sync(lambda c: c.execute("INSERT INTO settings VALUES ('a', 'b')")) is None
    assert db.write_sync(lambda c: c.execute("INSERT INTO settings VALUES ('c', 'd')").lastrowid) == 2
