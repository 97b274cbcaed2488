"""UPD-5: the encrypted backup format and verified, atomic restore.

Every bad file (wrong passphrase, wrong magic or version, truncated anywhere, a bit
flipped anywhere) is refused with a reason and leaves the target data directory
byte-for-byte unchanged. Disk full while writing is a clear error on a real 1 MiB tmpfs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.app import open_database
from appliance.backup.archive import create
from appliance.backup.errors import BackupDiskFullError, BackupError, BackupFormatError
from appliance.backup.format import write_backup
from appliance.backup.passphrase import read_passphrase_file
from appliance.backup.restore import restore
from appliance.backup.scheduler import due, list_backups, prune, scheduled_name
from appliance.backup.service import BackupService
from appliance.crypto import kdf, keyfile
from appliance.store import Database
from tests.conftest import FAST_ARGON2

FAST = kdf.KdfParams(**FAST_ARGON2)
PASS = b"correct backup passphrase"


def _tree(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _make_data_dir(path: Path, rows: int = 50) -> None:
    path.mkdir(mode=0o700, parents=True)
    db, _ = open_database(path, 1)
    try:
        db.write_sync(lambda c: c.executemany("INSERT INTO settings (key, value) VALUES (?, ?)",
                                              [(f"k{i}", "v" * 100) for i in range(rows)]))
    finally:
        db.close()
    (path / "tls").mkdir(mode=0o700)
    (path / "tls" / "ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Path, bytes]:
    """A data directory and a backup of it (with a large enough payload for several chunks)."""
    root = tmp_path_factory.mktemp("bk")
    data = root / "data"
    _make_data_dir(data)
    (data / "recordings").mkdir(mode=0o700)
    (data / "recordings" / "big.cast").write_bytes(os.urandom(2_500_000))  # 3 chunks of 1 MiB
    key = keyfile.load_key(data / "keys" / "db.key")
    db = Database.open(data / "outpost.db", key, readers=1)
    try:
        out = root / "good.opbk"
        create(db, data, out, PASS, config_path=None, app_version="test", params=FAST)
    finally:
        db.close()
    return data, out.read_bytes()


@pytest.fixture
def target(tmp_path) -> Path:
    """An existing, different data directory that a bad restore must leave untouched."""
    t = tmp_path / "target"
    _make_data_dir(t, rows=3)
    (t / "updates").mkdir()
    (t / "updates" / "slot-a").write_bytes(b"installed slot, not part of backups")
    return t


def test_round_trip_into_existing_and_fresh(good, tmp_path, target) -> None:
    data, blob = good
    f = tmp_path / "b.opbk"
    f.write_bytes(blob)
    assert blob[:8] == b"OUTPOSTB" and b"v" * 100 not in blob
    fresh = tmp_path / "fresh" / "data"
    restore(f, fresh, PASS)
    assert (fresh / "recordings" / "big.cast").read_bytes() == (data / "recordings" / "big.cast").read_bytes()
    db, _ = open_database(fresh, 1)
    try:
        assert db.read_sync(lambda c: c.execute("SELECT count(*) FROM settings WHERE key LIKE 'k%'").fetchone()[0]) == 50
    finally:
        db.close()
    # over an existing directory: replaced, but what a backup does not hold (update slots) is carried over
    restore(f, target, PASS)
    assert (target / "updates" / "slot-a").read_bytes().startswith(b"installed slot")
    assert (target / "keys" / "db.key").read_bytes() == (data / "keys" / "db.key").read_bytes()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no staging or old dir left


def _refused(blob: bytes, tmp_path: Path, target: Path, words: str | None = None, passphrase: bytes = PASS) -> str:
    f = tmp_path / "bad.opbk"
    f.write_bytes(blob)
    before = _tree(target)
    with pytest.raises(BackupFormatError) as err:
        restore(f, target, passphrase)
    assert _tree(target) == before
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]
    if words:
        assert words in err.value.message, err.value.message
    return err.value.message


def test_refusals_with_reasons(good, tmp_path, target) -> None:
    _, blob = good
    _refused(blob, tmp_path, target, "passphrase is wrong", passphrase=b"not the passphrase")
    _refused(b"PK\x03\x04" + blob[4:], tmp_path, target, "not an Outpost backup")
    _refused(b"", tmp_path, target, "not an Outpost backup")
    _refused(blob[:8] + b"\x02" + blob[9:], tmp_path, target, "format version 2")
    _refused(blob[:20], tmp_path, target, "truncated")
    _refused(blob[:-1], tmp_path, target, "truncated")
    _refused(blob[:len(blob) // 2], tmp_path, target, "truncated")
    _refused(blob + b"x", tmp_path, target, "extra bytes")
    # chunk-aligned truncation: drop the final chunk entirely
    head_len = 13 + int.from_bytes(blob[9:13], "big")
    offsets, pos = [], head_len
    while pos < len(blob):
        offsets.append(pos)
        pos += 4 + int.from_bytes(blob[pos:pos + 4], "big")
    assert len(offsets) >= 3
    _refused(blob[:offsets[-1]], tmp_path, target, "truncated")
    # reordered chunks
    c1, c2 = blob[offsets[0]:offsets[1]], blob[offsets[1]:offsets[2]]
    _refused(blob[:offsets[0]] + c2 + c1 + blob[offsets[2]:], tmp_path, target)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bit_flip_anywhere_is_refused(good, tmp_path, target, data) -> None:
    _, blob = good
    pos = data.draw(st.integers(min_value=0, max_value=len(blob) - 1), label="byte")
    bit = data.draw(st.integers(min_value=0, max_value=7), label="bit")
    flipped = bytearray(blob)
    flipped[pos] ^= 1 << bit
    _refused(bytes(flipped), tmp_path, target)


def test_not_enough_disk_space_is_a_clear_error(good, tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("missing tool: root for mount -t tmpfs (CI runs as root)")
    data, _ = good
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True, timeout=10)
    try:
        key = keyfile.load_key(data / "keys" / "db.key")
        db = Database.open(data / "outpost.db", key, readers=1)
        try:
            with pytest.raises(BackupDiskFullError, match="not enough disk space"):
                create(db, data, small / "b.opbk", PASS, config_path=None, app_version="t", params=FAST)
        finally:
            db.close()
        assert list(small.iterdir()) == []  # no partial file left behind
    finally:
        subprocess.run(["umount", str(small)], check=True, timeout=10)


def test_retention_keeps_newest(tmp_path) -> None:
    for i in range(5):
        (tmp_path / scheduled_name(1_700_000_000 + i * 3600)).write_bytes(b"x")
    doomed = prune(tmp_path, 2)
    assert len(doomed) == 3
    assert [p.name for p in list_backups(tmp_path)] == [scheduled_name(1_700_000_000 + i * 3600)
                                                               for i in (3, 4)]
    assert not due(tmp_path, 24, (tmp_path / scheduled_name(1_700_000_000 + 4 * 3600)).stat().st_mtime)


def test_passphrase_file_rules(tmp_path) -> None:
    p = tmp_path / "pp"
    p.write_bytes(b"secret\n")
    p.chmod(0o644)
    with pytest.raises(BackupError, match="chmod 600"):
        read_passphrase_file(p)
    p.chmod(0o600)
    assert read_passphrase_file(p) == b"secret"
    p.write_bytes(b"\n")
    with pytest.raises(BackupError, match="empty"):
        read_passphrase_file(p)


def test_scheduler_writes_into_directory_with_retention(good, tmp_path) -> None:
    import asyncio

    from appliance.clock import SystemClock
    from appliance.config import BackupConfig

    data, _ = good
    directory = tmp_path / "scheduled"
    directory.mkdir()
    for i in range(3):  # older backups, beyond retention once a new one exists
        old = directory / scheduled_name(1_600_000_000 + i)
        old.write_bytes(b"old")
        os.utime(old, (1_600_000_000 + i, 1_600_000_000 + i))
    pp = tmp_path / "pp"
    pp.write_bytes(PASS + b"\n")
    pp.chmod(0o600)
    cfg = BackupConfig(directory=str(directory), interval_hours=24, keep=2, passphrase_file=str(pp))
    key = keyfile.load_key(data / "keys" / "db.key")
    db = Database.open(data / "outpost.db", key, readers=1)
    service = BackupService(db, data, cfg, SystemClock(), config_path=None, app_version="t")

    async def run() -> None:
        task = asyncio.create_task(service.scheduler())
        for _ in range(200):
            await asyncio.sleep(0.05)
            if len(list_backups(directory)) == 2 and not any(p.read_bytes() == b"old" for p in
                                                               list_backups(directory)[-1:]):
                break
        task.cancel()

    try:
        asyncio.run(run())
        files = list_backups(directory)
        assert len(files) == 2 and files[-1].read_bytes()[:8] == b"OUTPOSTB"
        records = db.read_sync(lambda c: c.execute("SELECT count(*) FROM audit_log WHERE action = 'backup.create'").fetchone()[0])
        assert records == 1
    finally:
        db.close()
    assert BackupConfig().directory == ""  # disabled by default


@pytest.mark.parametrize("kind", ["symlink", "traversal", "absolute", "device", "no database"])
def test_sealed_but_malicious_content_is_refused(tmp_path, target, kind) -> None:
    """A correctly sealed file (right passphrase) whose tar content is hostile changes nothing."""
    import io
    import tarfile

    def add(tar: tarfile.TarFile) -> None:
        def entry(name: str, data: bytes = b"x", **kw) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data) if kw.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
            for k, v in kw.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if info.size else None)

        if kind != "no database":
            entry("outpost.db", b"db")
            entry("keys/db.key", b"k" * 65)
        if kind == "symlink":
            entry("tls/ca.pem", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        elif kind == "traversal":
            entry("../escaped", b"evil")
        elif kind == "absolute":
            entry("/tmp/outpost-absolute-escape", b"evil")
        elif kind == "device":
            entry("tls/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)

    f = tmp_path / "evil.opbk"
    write_backup(f, PASS, add, app_version="evil", params=FAST)
    before = _tree(target)
    with pytest.raises(BackupFormatError):
        restore(f, target, PASS)
    assert _tree(target) == before
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/outpost-absolute-escape").exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]
