"""UPD-5: backup format version 1 stays the same, byte for byte.

`data/backup-v1.opbk` was written by the code before the backup capability was split
into `appliance/backup/` and `crypto/stream.py` (issue 12); it must keep restoring.
The writer must keep producing the same bytes for the same inputs: with the salt, the
nonce prefix and the time fixed, a three-chunk backup hashes to what the old code wrote.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import tarfile
from pathlib import Path

import pytest

from appliance.backup.format import write_backup
from appliance.backup.restore import RESTORED_CONFIG, restore
from appliance.crypto import kdf

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "backup-v1.opbk"
PASS = b"golden backup passphrase"
FAST = kdf.KdfParams(time_cost=1, memory_kib=19456, parallelism=1)  # fixed: the golden file was made with these
SALT = bytes(range(16))
PREFIX = b"\x01\x02\x03\x04\x05\x06\x07"
CREATED = 1_700_000_000.0
# SHA-256 of the three-chunk file written by the pre-split code from `_big_files()`.
BIG_SHA256 = "3373e07bb0cad6375ca5f3a548f4c0068b5bc4441ec6569b01fb1ca1735baa4a"


def _small_files() -> dict[str, bytes]:
    return {"outpost.db": b"not really a database, but a restore only checks that it is there\n",
            "keys/db.key": b"0" * 64 + b"\n",
            "tls/ca.pem": b"-----BEGIN CERTIFICATE-----\ngolden\n-----END CERTIFICATE-----\n",
            "config.toml": b"[web]\nlisten_port = 8443\n"}


def _big_files() -> dict[str, bytes]:
    files = _small_files()
    files["recordings/big.cast"] = hashlib.shake_256(b"outpost golden").digest(2_500_000)  # 3 chunks of 1 MiB
    return files


def _add(files: dict[str, bytes]):
    def add(tar: tarfile.TarFile) -> None:
        dirs = sorted({name.rsplit("/", 1)[0] for name in files if "/" in name})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, int(CREATED)
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(CREATED)
            tar.addfile(info, io.BytesIO(data))
    return add


def _write_fixed(path: Path, files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> bytes:
    real = secrets.token_bytes
    monkeypatch.setattr(kdf, "new_salt", lambda: SALT)
    monkeypatch.setattr(secrets, "token_bytes", lambda n=None: PREFIX if n == 7 else real(n))
    write_backup(path, PASS, _add(files), app_version="golden", params=FAST, now=CREATED)
    return path.read_bytes()


def test_a_version_1_file_from_before_the_split_still_restores(tmp_path: Path) -> None:
    target = tmp_path / "data"
    header = restore(GOLDEN, target, PASS)
    assert (header.app_version, header.created_at, header.chunk_size) == ("golden", CREATED, 1 << 20)
    for name, data in _small_files().items():
        if name == "config.toml":
            name = RESTORED_CONFIG
        assert (target / name).read_bytes() == data


def test_the_writer_still_writes_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _write_fixed(tmp_path / "small.opbk", _small_files(), monkeypatch) == GOLDEN.read_bytes()
    big = _write_fixed(tmp_path / "big.opbk", _big_files(), monkeypatch)
    assert hashlib.sha256(big).hexdigest() == BIG_SHA256
    # and the three-chunk file reads back completely
    target = tmp_path / "restored"
    restore(tmp_path / "big.opbk", target, PASS)
    assert (target / "recordings" / "big.cast").read_bytes() == _big_files()["recordings/big.cast"]


if __name__ == "__main__":  # regenerate only with the pre-split code: `python -m tests.backup.test_format_v1`
    mp = pytest.MonkeyPatch()
    DATA.mkdir(exist_ok=True)
    _write_fixed(GOLDEN, _small_files(), mp)
    tmp = DATA / ".big.tmp"
    print(hashlib.sha256(_write_fixed(tmp, _big_files(), mp)).hexdigest())
    os.unlink(tmp)
    mp.undo()
