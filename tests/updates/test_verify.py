"""UPD-2: one malicious or broken bundle per case, each refused with a clear reason,
nothing installed, staging emptied."""

from __future__ import annotations

import os
import stat
import subprocess

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.crypto import signing
from appliance.updates import bundle, release, slots, staging
from appliance.updates.apply import Updater
from appliance.updates.staging import StagingError
from appliance.updates.verify import BundleRefusedError

from . import kit

MAX = 4 * 1024 * 1024


def updater(tmp_path, keys, audit_log=None, max_bytes=MAX):
    return Updater(install_root=tmp_path / "install", staging_dir=tmp_path / "data" / "updates" / "staging",
                   trust=keys.trust, max_bundle_bytes=max_bytes, health_timeout=5,
                   audit=(lambda a, o, d: audit_log.append((a, o, d))) if audit_log is not None else (lambda *a: None))


def replace(struct, **kw):
    return msgspec.structs.replace(struct, **kw)


def _entry(m, **kw):
    return replace(m, files=[replace(m.files[0], **kw)] + list(m.files[1:]))


def _other_root_cert(keys):
    return release.certify(kit.new_key(), signing.public_of(keys.signer), not_before=int(kit.NOW - 60),
                           not_after=int(kit.NOW + 86400))


def _fifo(path):
    os.mkfifo(path)
    return path


# (case id, builder(tmp_path, keys) -> path, expected reason fragment)
CASES = [
    ("no signature", lambda p, k: kit.make(p / "b", k, envelope_edit=lambda e: replace(e, signatures=[])), "not signed"),
    ("bad signature", lambda p, k: kit.make(p / "b", k, envelope_edit=lambda e: replace(
        e, signatures=[replace(e.signatures[0], signature=bytes(64))])), "bad signature"),
    ("signature over other manifest", lambda p, k: kit.make(p / "b", k, envelope_edit=lambda e: replace(
        e, manifest=e.manifest.replace(b'"2.0.0"', b'"9.0.0"'))), "bad signature"),
    ("unknown key", lambda p, k: kit.make(p / "b", k, envelope_edit=lambda e: replace(e, certificates=[])), "unknown key"),
    ("signing key under unknown root", lambda p, k: kit.make(
        p / "b", k, signers=[(k.signer, _other_root_cert(k))]), "unknown root"),
    ("expired signing key", lambda p, k: kit.make(p / "b", k, signers=[(k.signer, release.certify(
        k.root, signing.public_of(k.signer), not_before=int(kit.NOW - 10 * 86400), not_after=int(kit.NOW - 86400)))]),
     "expired"),
    ("downgrade", lambda p, k: kit.make(p / "b", k, version="0.9.0"), "downgrades are refused"),
    ("same version", lambda p, k: kit.make(p / "b", k, version="1.0.0"), "already installed"),
    ("below floor", lambda p, k: kit.make(p / "b", k, min_version="1.5.0"), "below the floor"),
    ("wrong product", lambda p, k: kit.make(p / "b", k, product="other"), "not 'outpost'"),
    ("payload hash mismatch", lambda p, k: kit.make(p / "b", k, blobs=[kit.program("2.0.0").replace(b"#", b"$")]),
     "SHA-256 does not match"),
    ("size mismatch (longer)", lambda p, k: kit.make(p / "b", k, blobs=[kit.program("2.0.0") + b"x"]), "size mismatch"),
    ("size mismatch (signed size wrong)", lambda p, k: kit.make(
        p / "b", k, manifest_edit=lambda m: _entry(m, size=m.files[0].size - 1)), "size mismatch"),
    ("truncated payload", lambda p, k: kit.make(p / "b", k, blobs=[kit.program("2.0.0")[:-3]]), "truncated"),
    ("truncated header", lambda p, k: _truncate(kit.make(p / "b", k), 40), "truncated"),
    ("empty file", lambda p, k: _truncate(kit.make(p / "b", k), 0), "truncated"),
    ("not a bundle", lambda p, k: _write(p / "b", b"PK\x03\x04" + bytes(100)), "not an Outpost update bundle"),
    ("path traversal ..", lambda p, k: kit.make(p / "b", k, files=[("outpost", b"x", True), ("../evil", b"y", False)]),
     "escapes the bundle"),
    ("path traversal nested ..", lambda p, k: kit.make(p / "b", k, files=[("outpost", b"x", True), ("lib/../../e", b"y", False)]),
     "escapes the bundle"),
    ("absolute path", lambda p, k: kit.make(p / "b", k, files=[("outpost", b"x", True), ("/etc/passwd", b"y", False)]),
     "absolute"),
    ("duplicate entries", lambda p, k: kit.make(p / "b", k, files=[("outpost", b"x", True), ("outpost", b"y", True)]),
     "twice"),
    ("duplicate entries by case", lambda p, k: kit.make(p / "b", k, files=[("outpost", b"x", True), ("OUTPOST", b"y", True)]),
     "twice"),
    ("file and directory", lambda p, k: kit.make(p / "b", k, files=[("outpost", b"x", True), ("outpost/x", b"y", False)]),
     "both as a file and as a directory"),
    ("no program", lambda p, k: kit.make(p / "b", k, files=[("readme", b"x", False)]), "no executable"),
    ("oversize", lambda p, k: _sparse(p / "b", MAX + 1), "larger than the limit"),
    ("symlink", lambda p, k: _symlink(kit.make(p / "real", k), p / "b"), "symbolic link"),
    ("fifo", lambda p, k: _fifo(p / "b"), "not a regular file"),
    ("device file", lambda p, k: __import__("pathlib").Path("/dev/zero"), "not a regular file"),
    ("directory", lambda p, k: p, "not a regular file"),
    ("missing", lambda p, k: p / "nothing", "no such file"),
]


def _write(path, data):
    path.write_bytes(data)
    return path


def _truncate(path, n):
    data = path.read_bytes()
    path.write_bytes(data[:n])
    return path


def _sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _symlink(target, link):
    link.symlink_to(target)
    return link


def _install_v1(tmp_path, keys):
    """An installed 1.0.0 in slot a, as a real apply leaves it."""
    up = updater(tmp_path, keys)
    up.apply(kit.make(tmp_path / "v1.opkg", keys, version="1.0.0"), snapshot=lambda d: d.write_bytes(b"snap"))
    assert up.status().installed == "1.0.0" and up.status().phase == "switched"
    up.layout.save(slots.State(result="installed 1.0.0"))  # what the launcher's health gate records
    return up


@pytest.mark.parametrize("case,build,reason", CASES, ids=[c[0] for c in CASES])
def test_bad_bundle_is_refused(tmp_path, keys, case, build, reason):
    _install_v1(tmp_path, keys)
    log = []
    up = updater(tmp_path, keys, log)
    before = sorted(str(p) for p in (tmp_path / "install").rglob("*"))
    src = build(tmp_path, keys)
    with pytest.raises((BundleRefusedError, StagingError)) as info:
        up.apply(src, snapshot=lambda d: pytest.fail("no snapshot for a refused bundle"))
    assert reason in info.value.message, info.value.message
    assert up.status().installed == "1.0.0"
    assert sorted(str(p) for p in (tmp_path / "install").rglob("*")) == before
    assert list(up.staging_dir.iterdir()) == []
    assert log and log[-1][:2] == ("update.verify", "failure") and reason in log[-1][2]["reason"]


def test_oversize_is_refused_before_reading(tmp_path, keys):
    """A FIFO would block a reader forever, and a huge sparse file would be read for minutes:
    both come back at once, so neither was opened for reading."""
    src = _sparse(tmp_path / "huge", 1 << 40)
    with pytest.raises(StagingError, match="it was not read"):
        staging.stage(src, tmp_path / "staging", max_bytes=MAX)
    assert not (tmp_path / "staging").exists() or not list((tmp_path / "staging").iterdir())


def test_good_bundle_verifies_and_keeps_nothing_staged(tmp_path, keys):
    up = updater(tmp_path, keys)
    v = up.verify_only(kit.make(tmp_path / "b", keys, version="1.2.3"))
    assert v.manifest.version == "1.2.3" and list(up.staging_dir.iterdir()) == []


def test_file_changing_while_read_is_refused(tmp_path, keys):
    src = kit.make(tmp_path / "b", keys, files=[("outpost", os.urandom(3 * staging.CHUNK), True)])

    def grow(copied):
        if copied == staging.CHUNK:
            with open(src, "ab") as f:
                f.write(b"more")

    with pytest.raises(StagingError, match="changed while it was being read"):
        staging.stage(src, tmp_path / "staging", max_bytes=MAX * 4, progress=grow)
    assert list((tmp_path / "staging").iterdir()) == []


def test_file_rewritten_in_place_while_read_is_refused(tmp_path, keys):
    src = kit.make(tmp_path / "b", keys, files=[("outpost", os.urandom(3 * staging.CHUNK), True)])

    def rewrite(copied):
        if copied == staging.CHUNK:
            with open(src, "r+b") as f:
                f.seek(10)
                f.write(b"!")
            os.utime(src, ns=(0, os.stat(src).st_mtime_ns + 1_000_000))

    with pytest.raises(StagingError, match="changed"):
        staging.stage(src, tmp_path / "staging", max_bytes=MAX * 4, progress=rewrite)


@pytest.fixture(scope="module")
def flip_base(tmp_path_factory, keys):
    d = tmp_path_factory.mktemp("flip")
    path = kit.make(d / "good.opkg", keys, version="3.0.0", files=[("outpost", kit.program("3.0.0"), True),
                                                                    ("lib/data.bin", os.urandom(300), False)])
    return d, path.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bit_flip_anywhere_is_refused(flip_base, keys, data):
    d, good = flip_base
    pos = data.draw(st.integers(0, len(good) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    bad = bytearray(good)
    bad[pos] ^= 1 << bit
    path = d / "flipped.opkg"
    path.write_bytes(bytes(bad))
    from appliance.updates import verify
    with pytest.raises(BundleRefusedError):
        verify.verify_file(path, keys.trust, installed_version="1.0.0", now=kit.NOW)


def test_unflipped_base_verifies(flip_base, keys):
    d, good = flip_base
    from appliance.updates import verify
    (d / "ok.opkg").write_bytes(good)
    assert verify.verify_file(d / "ok.opkg", keys.trust, installed_version="1.0.0", now=kit.NOW).manifest.version == "3.0.0"


def test_not_enough_space_to_stage(tmp_path, keys):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        src = kit.make(tmp_path / "b", keys, files=[("outpost", os.urandom(2 * 1024 * 1024), True)])
        up = Updater(install_root=tmp_path / "install", staging_dir=mnt / "staging", trust=keys.trust,
                     max_bundle_bytes=MAX, health_timeout=5, audit=lambda *a: None)
        with pytest.raises(StagingError, match="not enough disk space"):
            up.verify_only(src)
        # and when the stat check passes but the disk fills during the copy
        with pytest.raises(StagingError, match="not enough disk space"):
            staging._copy(src, mnt / "staging" / "x", os.stat(src), MAX, None)
        assert up.status().installed != "2.0.0"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_device_file_test_is_real():
    assert stat.S_ISCHR(os.stat("/dev/zero").st_mode)


def _two_files():
    return [("outpost", kit.program("2.0.0"), True), ("lib/data.bin", b"payload data", False)]


def _edit_entry(index, **kw):
    def edit(m):
        files = list(m.files)
        files[index] = replace(files[index], **kw)
        return replace(m, files=files)
    return edit


# Every manifest entry is checked, not only the last one (issue 11, finding 24). Each case is
# built with NO payload after the header: a refusal naming the entry proves it came from the
# manifest check, before any payload byte was read ("truncated"/"size mismatch" would not).
ENTRY_CASES = [
    ("negative size, first entry", 0, {"size": -1}, "'outpost'"),
    ("negative size, last entry", 1, {"size": -7}, "'lib/data.bin'"),
    ("non-hex hash, first entry", 0, {"sha256": "z" * 64}, "'outpost'"),
    ("short hash, first entry", 0, {"sha256": "ab"}, "'outpost'"),
    ("uppercase hash, first entry", 0, {"sha256": "AB" * 32}, "'outpost'"),
    ("non-hex inside the hash, first entry", 0, {"sha256": "a" * 30 + "g" + "a" * 33}, "'outpost'"),
    ("hash too long, last entry", 1, {"sha256": "a" * 65}, "'lib/data.bin'"),
]


@pytest.mark.parametrize("case,index,edit,name", ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES])
def test_every_manifest_entry_is_checked_before_the_payload(tmp_path, keys, case, index, edit, name):
    from appliance.updates import verify

    path = kit.make(tmp_path / "b", keys, files=_two_files(), manifest_edit=_edit_entry(index, **edit), blobs=[])
    with pytest.raises(BundleRefusedError) as info:
        verify.verify_file(path, keys.trust, installed_version="1.0.0", now=kit.NOW)
    message = info.value.message
    assert name in message and "invalid size or hash" in message, message
