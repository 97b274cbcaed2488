"""UPD-1: keygen and bundle as the release engineer runs them (the real script)."""

from __future__ import annotations

import stat
import subprocess
import sys
import time

from appliance.crypto import signing
from appliance.updates import release, roots, verify
from tests.conftest import ROOT


def _release(*args):
    return subprocess.run([sys.executable, "-m", "appliance.updates.release", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_keygen_then_bundle_verifies_under_that_root(tmp_path):
    keys = tmp_path / "keys"
    assert _release("keygen", "--out", str(keys)).returncode == 0
    for name in ("root.key", "signing.key"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in (keys / name).read_bytes()
    program = tmp_path / "outpost"
    program.write_bytes(b"#!/bin/sh\necho real\n")
    r = _release("bundle", "--key", str(keys / "signing.key"), "--cert", str(keys / "signing.cert"), "--binary",
                 str(program), "--version", "1.2.0", "--min-version", "1.0.0", "--out", str(tmp_path / "b.opkg"))
    assert r.returncode == 0, r.stderr
    assert "PRIVATE" not in r.stdout + r.stderr
    trust = roots.from_keys({"root": signing.parse_public((keys / "root.pub").read_text())})
    v = verify.verify_file(tmp_path / "b.opkg", trust, installed_version="1.1.0", now=time.time())
    assert (v.manifest.version, v.manifest.min_version, v.manifest.files[0].path) == ("1.2.0", "1.0.0", "outpost")
    # rotation: a new signing key under the same root
    assert _release("keygen", "--out", str(tmp_path / "k2"), "--root-key", str(keys / "root.key")).returncode == 0
    assert not (tmp_path / "k2" / "root.key").exists()
    cert = release.load_cert(tmp_path / "k2" / "signing.cert")
    assert cert.body and verify.bundle.decode_canonical(cert.body, verify.bundle.KeyCertBody, "c").root_id == trust.roots[0].key_id


def test_keygen_never_overwrites(tmp_path):
    assert _release("keygen", "--out", str(tmp_path)).returncode == 0
    before = (tmp_path / "root.key").read_bytes()
    r = _release("keygen", "--out", str(tmp_path))
    assert r.returncode == 1 and (tmp_path / "root.key").read_bytes() == before


def test_builtin_roots_are_the_development_root():
    trust = roots.builtin()
    assert [r.name for r in trust.roots] == ["development"] and trust.development_only
