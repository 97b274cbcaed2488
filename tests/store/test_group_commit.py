"""Group commit: many concurrent writes share transactions, and a failing job fails alone."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from appliance.errors import OutpostError
from appliance.store import ConstraintError

from .jobs import audited_change, insert_setting, setting_names


def test_2000_concurrent_writes_all_commit_in_few_transactions(db):
    before = db.stats()

    async def scenario():
        return await asyncio.gather(*(db.write(insert_setting(f"k{i}")) for i in range(2000)))

    assert asyncio.run(scenario()) == [1] * 2000
    assert len(db.read_sync(setting_names)) == 2000
    after = db.stats()
    assert after["jobs"] - before["jobs"] == 2000
    assert after["batches"] - before["batches"] < 200  # grouped, not one COMMIT each


def _run_one_batch(db, jobs):
    """Queue `jobs` behind a blocked writer so they all land in the same batch; return outcomes."""
    gate, started = threading.Event(), threading.Event()

    def blocking_job(conn):
        started.set()
        gate.wait(5)

    async def scenario():
        blocker = asyncio.ensure_future(db.write(blocking_job))
        assert await asyncio.to_thread(started.wait, 5)  # the writer is inside the blocker's batch
        futures = [asyncio.ensure_future(db.write(job)) for job in jobs]
        await asyncio.sleep(0.02)  # every job is queued
        gate.set()
        await blocker
        return await asyncio.gather(*futures, return_exceptions=True)

    batches = db.stats()["batches"]
    outcomes = asyncio.run(scenario())
    assert db.stats()["batches"] - batches == 2  # the blocker's batch, then all of `jobs` together
    return outcomes


def test_a_constraint_violation_fails_alone_in_its_batch(db):
    db.write_sync(insert_setting("taken"))

    def violating(conn):
        conn.execute("INSERT INTO settings (key, value) VALUES ('half-done', 'x')")  # must be undone too
        conn.execute("INSERT INTO settings (key, value) VALUES ('taken', 'again')")

    jobs = [insert_setting(f"n{i}") for i in range(100)]
    jobs.insert(50, violating)
    outcomes = _run_one_batch(db, jobs)
    assert isinstance(outcomes[50], ConstraintError)
    assert outcomes[:50] + outcomes[51:] == [1] * 100
    assert db.read_sync(setting_names) == {"taken"} | {f"n{i}" for i in range(100)}


def test_a_job_that_raises_rolls_back_only_its_own_changes(db):
    """The audit fail-closed guarantee: change + audit row in one job, all or nothing."""
    refusal = OutpostError("audit record could not be written")

    def change_then_fail(conn):
        audited_change("doomed", "1")(conn)
        conn.execute("UPDATE settings SET value = 'changed' WHERE key = 'kept-0'")
        raise refusal

    jobs = [audited_change(f"kept-{i}", "v") for i in range(10)]
    jobs.insert(5, change_then_fail)
    outcomes = _run_one_batch(db, jobs)
    assert outcomes[5] is refusal
    assert all(isinstance(o, int) for o in outcomes[:5] + outcomes[6:])
    rows = dict(db.read_sync(lambda c: [tuple(r) for r in c.execute("SELECT key, value FROM settings")]))
    assert rows == {f"kept-{i}": "v" for i in range(10)}
    targets = db.read_sync(lambda c: [r["target"] for r in c.execute("SELECT target FROM audit_log ORDER BY seq")])
    assert targets == [f"kept-{i}" for i in range(10)]
    # Later jobs in the same batch saw the earlier ones' uncommitted rows: the chain is intact.
    chain = db.read_sync(lambda c: [tuple(r) for r in c.execute("SELECT prev_hash, hash FROM audit_log ORDER BY seq")])
    assert all(prev == chain[i - 1][1] for i, (prev, _) in enumerate(chain) if i)


def test_sync_writers_from_many_threads(db):
    errors = []

    def worker(n):
        try:
            for i in range(50):
                db.write_sync(insert_setting(f"t{n}-{i}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(db.read_sync(setting_names)) == 1000


def test_benchmark_audited_writes_with_20_concurrent_writers(db, capsys):
    """Sanity figure only (no assertion on speed): audited inserts/s through group commit."""
    stop_at = time.perf_counter() + 1.5
    counts = [0] * 20

    async def writer(n):
        while time.perf_counter() < stop_at:
            await db.write(audited_change(f"w{n}", str(counts[n])))
            counts[n] += 1

    async def scenario():
        started = time.perf_counter()
        await asyncio.gather(*(writer(n) for n in range(20)))
        return time.perf_counter() - started

    before = db.stats()
    elapsed = asyncio.run(scenario())
    after = db.stats()
    total = sum(counts)
    batches = after["batches"] - before["batches"]
    with capsys.disabled():
        print(f"\n[store bench] 20 concurrent writers: {total / elapsed:,.0f} durable audited writes/s "
              f"({total} in {elapsed:.2f}s, {batches} commits, {total / max(batches, 1):.1f} jobs/commit)")
    assert total > 0
    assert db.read_sync(lambda c: c.execute("SELECT count(*) FROM audit_log").fetchone()[0]) == total
