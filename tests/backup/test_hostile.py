"""Restoring a hostile backup through the real CLI (issue 11, "not yet covered").

Each file is a correctly sealed backup (right passphrase, valid format) whose tar content is
hostile: paths with "..", absolute paths, symbolic and hard links, device files and FIFOs,
PAX and GNU long-name tricks, a file where a directory must be. `outpost restore` must refuse
each with a clear message (exit 1, no traceback), change nothing in the target data
directory, create nothing outside it, and leave no staging directory behind."""

from __future__ import annotations

import hashlib
import io
import secrets
import tarfile
from pathlib import Path

import pytest

from appliance.backup.format import write_backup
from appliance.crypto import kdf
from tests.conftest import FAST_ARGON2, outpost

FAST = kdf.KdfParams(**FAST_ARGON2)
PASS = "hostile backup passphrase"
OUTSIDE = Path("/tmp") / f"outpost-hostile-{secrets.token_hex(4)}"


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        kind = "link" if p.is_symlink() else "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[p.relative_to(root).as_posix()] = f"{kind}:{oct(st.st_mode)}"
    return out


def _entry(tar: tarfile.TarFile, name: str, data: bytes = b"x", **kw) -> None:
    info = tarfile.TarInfo(name)
    kind = kw.get("type", tarfile.REGTYPE)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o600
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def _base(tar: tarfile.TarFile) -> None:
    _entry(tar, "outpost.db", b"db")
    _entry(tar, "keys", type=tarfile.DIRTYPE, mode=0o700)
    _entry(tar, "keys/db.key", b"k" * 65)


CASES = {  # name: (what to add after a valid base, words the refusal must contain)
    "dot-dot": (lambda t: _entry(t, "../escaped", b"evil"), "forbidden path"),
    "nested dot-dot": (lambda t: _entry(t, "keys/../../escaped", b"evil"), "forbidden path"),
    "absolute path": (lambda t: _entry(t, f"{OUTSIDE}/absolute", b"evil"), "forbidden path"),
    "backslash path": (lambda t: _entry(t, "..\\escaped", b"evil"), "forbidden path"),
    "symlink to /etc/passwd": (lambda t: _entry(t, "tls/ca.pem", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
                               "a symbolic link, which is forbidden"),
    "symlinked directory, then a file through it": (lambda t: (
        _entry(t, "tls", type=tarfile.SYMTYPE, linkname=str(OUTSIDE)), _entry(t, "tls/planted", b"evil")),
        "a symbolic link, which is forbidden"),
    "hard link to a file outside": (lambda t: _entry(t, "keys/vault.key", type=tarfile.LNKTYPE, linkname="/etc/passwd"),
                                    "a hard link, which is forbidden"),
    "hard link inside the backup": (lambda t: _entry(t, "keys/copy", type=tarfile.LNKTYPE, linkname="outpost.db"),
                                    "a hard link, which is forbidden"),
    "character device": (lambda t: _entry(t, "tls/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
                         "a device file, which is forbidden"),
    "block device": (lambda t: _entry(t, "tls/disk", type=tarfile.BLKTYPE, devmajor=8, devminor=0),
                     "a device file, which is forbidden"),
    "fifo": (lambda t: _entry(t, "tls/pipe", type=tarfile.FIFOTYPE), "a FIFO, which is forbidden"),
    "pax path override": (lambda t: _entry(t, "harmless", b"evil", pax_headers={"path": "../pax-escaped"}),
                          "forbidden path: '../pax-escaped'"),
    "gnu long name with dot-dot": (lambda t: _entry(t, "keys/" + "a/" * 60 + "../" * 62 + "gnu-escaped", b"evil"),
                                   "forbidden path"),
    "a file where a directory must be": (lambda t: (_entry(t, "tls", b"not a dir"), _entry(t, "tls/ca.pem", b"x")),
                                         "damaged: it cannot be unpacked"),
}


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("target") / "data"
    r = outpost("init", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    return data


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_backup_is_refused_and_nothing_changes(tmp_path, target, case):
    fmt = tarfile.GNU_FORMAT if case.startswith("gnu") else tarfile.PAX_FORMAT

    def add(tar: tarfile.TarFile) -> None:
        tar.format = fmt
        _base(tar)
        CASES[case][0](tar)

    hostile = tmp_path / "hostile.opbk"
    write_backup(hostile, PASS.encode(), add, app_version="evil", params=FAST)
    pp = tmp_path / "pp"
    pp.write_text(PASS + "\n")
    pp.chmod(0o600)
    before = _tree(target)
    siblings = sorted(p.name for p in target.parent.iterdir())
    r = outpost("restore", str(hostile), "--data-dir", str(target), "--passphrase-file", str(pp), "--force")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("outpost: error: ")
    assert CASES[case][1] in r.stderr, r.stderr
    assert r.stderr.rstrip().endswith(f"(nothing was changed in {target})"), r.stderr
    assert _tree(target) == before, "the data directory changed"
    assert sorted(p.name for p in target.parent.iterdir()) == siblings, "a staging directory was left behind"
    for escaped in (target.parent / "escaped", target.parent / "pax-escaped", target.parent / "gnu-escaped",
                    target / "escaped", tmp_path / "escaped", Path("/tmp/escaped")):
        assert not escaped.exists(), escaped
    assert not OUTSIDE.exists()
