"""Durability (STORE-5): acknowledged writes survive kill -9; a full disk loses nothing."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.store import Database, DiskFullError

from .jobs import insert_setting, setting_names

WRITER = Path(__file__).with_name("crash_writer.py")


def _run_and_kill(db_path: Path, key: bytes, mode: str, run: int, after: float) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db_path), key.hex(), mode, f"r{run}-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout.readline() == b"ready\n", proc.stderr.read().decode()
        time.sleep(after)
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    # Only complete lines were acknowledged; a torn last line is not a promise.
    return [line for line in out.decode().split("\n")[:-1]]


@pytest.mark.parametrize("mode", ["sync", "async", "threads"])
def test_acknowledged_writes_survive_kill_9(db_path, key, mode):
    Database.open(db_path, key).close()
    acknowledged: set[str] = set()
    for run in range(2):  # each reopen first recovers the WAL the killed writer left behind
        acknowledged |= set(_run_and_kill(db_path, key, mode, run, after=random.uniform(0.6, 1.0)))
        assert db_path.with_name("outpost.db-wal").exists()  # killed with a live WAL: recovery is tested
        with Database.open(db_path, key) as db:  # quick_check + cipher_integrity_check pass, too
            stored = db.read_sync(setting_names)
        missing = acknowledged - stored
        assert not missing, f"{len(missing)} acknowledged writes lost after kill -9, e.g. {sorted(missing)[:5]}"
    assert len(acknowledged) > 100  # the writer really was busy when it was killed


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, so the disk can really fill up (ENOSPC from the kernel)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_disk_full_fails_clearly_loses_nothing_and_recovers(small_disk, key):
    db_path = small_disk / "outpost.db"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (768 * 1024))  # freed later to give the space back
    db = Database.open(db_path, key)
    try:
        acknowledged = set()
        error = None
        for i in range(10_000):
            name = f"row-{i}"
            try:
                db.write_sync(insert_setting(name, os.urandom(1500).hex()))
            except DiskFullError as exc:
                error = exc
                break
            acknowledged.add(name)
        assert error is not None, "the disk never filled up"
        assert str(error) == "the data disk is full; the change was not saved"
        assert error.code == "disk_full"
        assert len(acknowledged) > 50

        # A group of concurrent writes while full: each either commits (and is kept) or fails
        # with DiskFullError; jobs sharing a transaction that SQLite abandoned are not acknowledged.
        async def burst():
            names = [f"burst-{i}" for i in range(40)]
            results = await asyncio.gather(
                *(db.write(insert_setting(n, os.urandom(1000).hex())) for n in names), return_exceptions=True)
            return dict(zip(names, results))

        outcomes = asyncio.run(burst())
        assert all(r == 1 or isinstance(r, DiskFullError) for r in outcomes.values()), outcomes
        acknowledged |= {n for n, r in outcomes.items() if r == 1}

        # Still full: reads work and report everything acknowledged; writes keep failing cleanly.
        assert acknowledged <= db.read_sync(setting_names)
        with pytest.raises(DiskFullError):
            db.write_sync(insert_setting("still-full", os.urandom(3000).hex()))

        filler.unlink()  # space returns: the same Database resumes without a restart
        db.write_sync(insert_setting("after-space-returned"))
        acknowledged.add("after-space-returned")
    finally:
        db.close()
    with Database.open(db_path, key) as again:  # open runs quick_check and cipher_integrity_check
        assert again.read_sync(lambda c: c.execute("PRAGMA quick_check").fetchone()[0]) == "ok"
        stored = again.read_sync(setting_names)
    assert acknowledged <= stored
    assert "still-full" not in stored
    assert not {n for n, r in outcomes.items() if r != 1} & stored  # failed writes really were not saved
