"""UPD-4: the integrity self-check hashes installed files against the signed manifest."""

from __future__ import annotations

import sys

import pytest

from appliance import app, config
from appliance.system import integrity
from appliance.updates import slots, verify
from appliance.updates.apply import Updater
from tests.updates import kit


def _installed(tmp_path, keys):
    up = Updater(install_root=tmp_path / "install", staging_dir=tmp_path / "staging", trust=keys.trust,
                 max_bundle_bytes=1 << 22, health_timeout=5, audit=lambda *a: None)
    src = kit.make(tmp_path / "b.opkg", keys, version="1.4.0",
                   files=[("outpost", kit.program("1.4.0"), True), ("lib/data.bin", bytes(range(256)) * 8, False)])
    up.apply(src, snapshot=lambda d: d.write_bytes(b""))
    return up.layout.program()


def _check(program, keys):
    return integrity.check(frozen=True, executable=program, load_manifest=lambda p: verify.read_release(p, keys.trust))


@pytest.mark.parametrize("victim", ["outpost", "lib/data.bin"])
def test_one_changed_byte_is_a_mismatch(tmp_path, keys, victim):
    program = _installed(tmp_path, keys)
    assert _check(program, keys).status == integrity.VERIFIED
    target = program.parent / victim
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    report = _check(program, keys)
    assert report.status == integrity.MISMATCH and victim in report.message
    assert integrity.samples(report)[0][-1] == 0


def test_missing_file_and_untrusted_manifest(tmp_path, keys):
    program = _installed(tmp_path, keys)
    (program.parent / "lib" / "data.bin").unlink()
    assert "missing" in _check(program, keys).message
    other = kit.Keys()
    report = integrity.check(frozen=True, executable=program, load_manifest=lambda p: verify.read_release(p, other.trust))
    assert report.status == integrity.MISMATCH and "unknown root" in report.message


def test_development_and_unverifiable(tmp_path):
    (tmp_path / "outpost").write_bytes(b"x")
    dev = integrity.check(frozen=False, executable=tmp_path / "outpost", load_manifest=None)
    assert dev.status == integrity.DEVELOPMENT and "development build, not verifiable" in dev.message
    assert integrity.check(frozen=True, executable=tmp_path / "outpost", load_manifest=None).status == integrity.UNVERIFIABLE
    assert integrity.samples(dev)[0][-1] == -1


def test_mismatch_at_start_is_audited(tmp_path, keys, monkeypatch):
    """The composition root runs the check at start; a frozen binary whose slot was altered
    gets an alert in the audit log."""
    from appliance.audit import queries
    from appliance.audit.filters import parse

    program = _installed(tmp_path, keys)
    program.write_bytes(program.read_bytes() + b"#")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(program))
    monkeypatch.setattr("appliance.updates.roots.builtin", lambda: keys.trust)
    services = app.build(config.with_data_dir(config.Config(), str(tmp_path / "data")))
    try:
        assert services.integrity.status == integrity.MISMATCH
        flt, _, _ = parse({"action": "integrity.mismatch"})
        records = services.db.read_sync(lambda conn: queries.list_records(conn, flt, limit=10, offset=0))
        assert records and records[0].outcome == "failure"
        again = services.check_integrity(actor=None)
        assert again.status == integrity.MISMATCH
        samples = [x for source in services.metric_sources for x in source() if x[0] == "outpost_integrity_ok"]
        assert samples and samples[0][-1] == 0  # registered as a /metrics source
    finally:
        services.close()
