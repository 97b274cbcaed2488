"""TLSManager: files at rest, renewal, refusal on damage, the SSLContext profiles."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.events import Event
from appliance.errors import OutpostError
from appliance.tls import TLSError, TLSFileError, TLSKeyPasswordError, TLSManager, selfsigned
from appliance.tls.context import INTERMEDIATE_CIPHERS

from .conftest import KEY_PASSWORD, make_manager

DAY = 86400


def _snapshot(tls_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(tls_dir.iterdir()) if p.is_file()}


def test_first_start_generates_then_nothing_to_do(tmp_path: Path, frozen_clock) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock)
    assert m.ensure() == [Event.TLS_CA_GENERATE, Event.TLS_CERT_GENERATE]
    before = _snapshot(tmp_path / "tls")
    again = make_manager(tmp_path / "tls", frozen_clock)
    assert again.ensure() == []
    assert _snapshot(tmp_path / "tls") == before
    assert again.info() == m.info()


def test_files_modes_and_keys_encrypted_at_rest(manager: TLSManager) -> None:
    tls_dir = manager.ca_pem_path.parent
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    names = sorted(p.name for p in tls_dir.iterdir())
    assert names == ["ca.key", "ca.pem", "server.pem"]  # no temp files left behind
    for path in tls_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        data = path.read_bytes()
        assert b"BEGIN PRIVATE KEY" not in data and b"BEGIN EC PRIVATE KEY" not in data, path
    for name in ("ca.key", "server.pem"):
        assert (tls_dir / name).read_bytes().count(b"BEGIN ENCRYPTED PRIVATE KEY") == 1
    assert b"PRIVATE KEY" not in manager.ca_pem_path.read_bytes()


def test_renews_leaf_past_threshold_and_keeps_ca(tmp_path: Path, frozen_clock) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock, leaf_days=90, renew_before_days=30)
    m.ensure()
    first = m.info()
    frozen_clock.advance(60 * DAY - 60)  # 30 days + 1 minute before expiry: not yet
    assert m.ensure() == []
    frozen_clock.advance(120)  # now inside the 30-day window
    assert m.ensure() == [Event.TLS_CERT_RENEW]
    renewed = m.info()
    assert renewed.ca_fingerprint == first.ca_fingerprint
    assert renewed.leaf_fingerprint != first.leaf_fingerprint
    assert renewed.leaf_not_after == pytest.approx(frozen_clock.now() + 90 * DAY, abs=1)
    assert make_manager(tmp_path / "tls", frozen_clock).ensure() == []  # what is on disk is the renewed pair


def test_new_name_covered_by_ca_renews_only_the_leaf(tmp_path: Path, frozen_clock) -> None:
    make_manager(tmp_path / "tls", frozen_clock, hostname="outpost.test").ensure()
    m = make_manager(tmp_path / "tls", frozen_clock, hostname="ui.outpost.test")  # below a permitted name
    assert m.ensure() == [Event.TLS_CERT_RENEW]
    assert "ui.outpost.test" in m.info().leaf_sans


def test_new_name_outside_ca_regenerates_ca_and_leaf(tmp_path: Path, frozen_clock) -> None:
    first = make_manager(tmp_path / "tls", frozen_clock, hostname="outpost.test")
    first.ensure()
    m = make_manager(tmp_path / "tls", frozen_clock, hostname="other.example")
    assert m.ensure() == [Event.TLS_CA_GENERATE, Event.TLS_CERT_RENEW]
    assert m.info().ca_fingerprint != first.info().ca_fingerprint
    ca = x509.load_pem_x509_certificate(m.ca_pem_path.read_bytes())
    assert selfsigned.fingerprint(ca) == m.info().ca_fingerprint  # the public copy follows


def test_ca_close_to_expiry_is_regenerated(tmp_path: Path, frozen_clock) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock, ca_days=365, leaf_days=90, renew_before_days=30)
    m.ensure()
    frozen_clock.advance(340 * DAY)
    assert m.ensure() == [Event.TLS_CA_GENERATE, Event.TLS_CERT_RENEW]


def test_wrong_key_password_is_a_clear_error_and_writes_nothing(manager: TLSManager, tmp_path: Path, frozen_clock) -> None:
    before = _snapshot(tmp_path / "tls")
    m = make_manager(tmp_path / "tls", frozen_clock, password=b"not-the-password")
    with pytest.raises(TLSKeyPasswordError) as info:
        m.ensure()
    assert isinstance(info.value, TLSError) and isinstance(info.value, OutpostError)
    assert "key password is wrong" in info.value.message and "ca.key" in info.value.message
    assert info.value.code == "tls_key_password"
    assert _snapshot(tmp_path / "tls") == before


def _other_cert(frozen_clock) -> bytes:
    names = selfsigned.names_for("", "elsewhere", [])
    return selfsigned.cert_pem(selfsigned.generate_ca(names, now=frozen_clock.now(), days=365).cert)


def _plain_key_pem(path: Path) -> bytes:
    key_pem = b"-----BEGIN ENCRYPTED" + path.read_bytes().split(b"-----BEGIN ENCRYPTED", 1)[1]
    key = serialization.load_pem_private_key(key_pem, password=KEY_PASSWORD)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _swap_key(data: bytes) -> bytes:
    head, _, rest = data.partition(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    _, _, tail = rest.partition(b"-----END ENCRYPTED PRIVATE KEY-----\n")
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSWORD),
    )
    return head + other + tail


# (file, how it is damaged, expected error class, words the message must contain)
DAMAGE = [
    ("server.pem", lambda d: d[: len(d) // 2], TLSFileError, "damaged"),
    ("server.pem", lambda d: b"garbage\n", TLSFileError, "damaged"),
    ("server.pem", lambda d: d.replace(b"MI", b"mi", 1), TLSFileError, "damaged"),
    ("server.pem", lambda d: _swap_key(d), TLSFileError, "does not match"),
    ("ca.key", lambda d: d[:100], TLSFileError, "damaged"),
    ("ca.key", lambda d: _swap_key(d), TLSFileError, "does not match"),
    ("ca.pem", lambda d: b"not a certificate\n", TLSFileError, "damaged"),
    ("server.pem", lambda d: b"", TLSFileError, "damaged"),
]


@pytest.mark.parametrize(("name", "damage", "error", "words"), DAMAGE)
def test_damaged_file_is_refused_and_nothing_is_overwritten(
    manager: TLSManager, tmp_path: Path, frozen_clock, name, damage, error, words
) -> None:
    tls_dir = tmp_path / "tls"
    path = tls_dir / name
    path.write_bytes(damage(path.read_bytes()))
    before = _snapshot(tls_dir)
    frozen_clock.advance(80 * DAY)  # renewal would be due: still nothing may be written
    with pytest.raises(error) as info:
        make_manager(tls_dir, frozen_clock).ensure()
    assert words in info.value.message and name in info.value.message
    assert _snapshot(tls_dir) == before


def test_plaintext_key_on_disk_is_refused(manager: TLSManager, tmp_path: Path, frozen_clock) -> None:
    path = tmp_path / "tls" / "server.pem"
    cert = path.read_bytes().split(b"-----BEGIN ENCRYPTED")[0]
    path.write_bytes(cert + _plain_key_pem(path))
    with pytest.raises(TLSFileError, match="not encrypted"):
        make_manager(tmp_path / "tls", frozen_clock).ensure()


def test_unreadable_file_is_refused(manager: TLSManager, tmp_path: Path, frozen_clock) -> None:
    # chmod 000 does not stop root, so make the path unreadable as a file another way.
    path = tmp_path / "tls" / "ca.key"
    data = path.read_bytes()
    path.unlink()
    path.mkdir()
    with pytest.raises(TLSFileError, match="cannot read .*ca.key"):
        make_manager(tmp_path / "tls", frozen_clock).ensure()
    path.rmdir()
    path.write_bytes(data)


def test_lost_ca_key_never_silently_replaces_the_ca(manager: TLSManager, tmp_path: Path, frozen_clock) -> None:
    (tmp_path / "tls" / "ca.key").unlink()
    before = _snapshot(tmp_path / "tls")
    with pytest.raises(TLSFileError, match="CA key .* is missing"):
        make_manager(tmp_path / "tls", frozen_clock).ensure()
    assert _snapshot(tmp_path / "tls") == before


def test_public_ca_copy_is_restored_from_the_ca_key(manager: TLSManager, tmp_path: Path, frozen_clock) -> None:
    """A missing ca.pem, or one left from the previous CA by a crash mid-regeneration, is rewritten."""
    expected = manager.ca_pem_path.read_bytes()
    manager.ca_pem_path.unlink()
    assert make_manager(tmp_path / "tls", frozen_clock).ensure() == []
    assert manager.ca_pem_path.read_bytes() == expected
    manager.ca_pem_path.write_bytes(_other_cert(frozen_clock))
    assert make_manager(tmp_path / "tls", frozen_clock).ensure() == []
    assert manager.ca_pem_path.read_bytes() == expected


def test_leaf_from_another_ca_is_renewed(manager: TLSManager, tmp_path: Path, frozen_clock) -> None:
    """A crash after a CA regeneration leaves the old CA's leaf: it is replaced, not trusted."""
    other = make_manager(tmp_path / "other", frozen_clock)
    other.ensure()
    (tmp_path / "tls" / "server.pem").write_bytes((tmp_path / "other" / "server.pem").read_bytes())
    assert make_manager(tmp_path / "tls", frozen_clock).ensure() == [Event.TLS_CERT_RENEW]


def test_empty_key_password_is_refused(tmp_path: Path, frozen_clock) -> None:
    with pytest.raises(ValueError):
        make_manager(tmp_path / "tls", frozen_clock, password=b"")


def test_intermediate_context(manager: TLSManager) -> None:
    ctx = manager.ssl_context()
    assert ctx is manager.ssl_context()  # built once
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2 and ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.options & ssl.OP_NO_COMPRESSION and ctx.options & ssl.OP_NO_TICKET
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert ctx.num_tickets == 0
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert sorted(tls12) == sorted(INTERMEDIATE_CIPHERS.split(":"))


def test_modern_context(tmp_path: Path, frozen_clock) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock, profile="modern")
    m.ensure()
    ctx = m.ssl_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert m.info().profile == "modern"


def test_context_and_info_need_ensure(tmp_path: Path, frozen_clock) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock)
    with pytest.raises(RuntimeError):
        m.ssl_context()
    with pytest.raises(RuntimeError):
        m.info()
