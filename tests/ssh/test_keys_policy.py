"""Key loading refuses bad input with clear messages and no key material (DEV-2 bad input);
the algorithm policy is modern by default with legacy only on opt-in (DEV-4)."""

import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from appliance.ssh import keys
from appliance.ssh.connect import Credential, algorithms
from appliance.ssh.errors import InvalidKeyError
from tests.conftest import require_tool


def _keygen(tmp_path, kind, passphrase=""):
    require_tool("ssh-keygen")
    path = tmp_path / f"k-{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "", "-f", str(path)], check=True,
                   capture_output=True, timeout=30)
    return path.read_text(), (tmp_path / f"k-{kind}.pub").read_text().strip()


def test_good_and_encrypted_keys(tmp_path):
    private, public = _keygen(tmp_path, "ed25519", passphrase="open sesame 42")
    key = keys.load_private_key(private, "open sesame 42")
    assert keys.same_key(keys.public_line(key), public)
    assert keys.fingerprint(public).startswith("SHA256:")
    with pytest.raises(InvalidKeyError, match="wrong or missing passphrase") as info:
        keys.load_private_key(private, "wrong passphrase")
    assert "open sesame" not in str(info.value) and "PRIVATE" not in str(info.value)


@pytest.mark.parametrize("text", ["", "not a key", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
                                  "\x00\xff" * 40])
def test_unparseable_private_keys(text):
    with pytest.raises(InvalidKeyError, match="not in a supported"):
        keys.load_private_key(text)


def test_short_rsa_refused():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = weak.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()
    with pytest.raises(InvalidKeyError, match="under 2048 bits"):
        keys.load_private_key(pem)


@pytest.mark.parametrize("line", ["", "ssh-ed25519", "ssh-ed25519 !!!notbase64", "hello world"])
def test_bad_host_key_lines(line):
    with pytest.raises(InvalidKeyError):
        keys.load_public_key(line)


def test_credential_repr_hides_secrets():
    assert "hunter2" not in repr(Credential(username="u", password="hunter2"))


def test_algorithm_policy():
    modern, legacy = algorithms(False), algorithms(True)
    assert modern["kex_algs"][0] in ("mlkem768x25519-sha256", "curve25519-sha256")
    assert modern["encryption_algs"][:2] == ["aes256-gcm@openssh.com", "aes128-gcm@openssh.com"]
    assert modern["encryption_algs"].index("chacha20-poly1305@openssh.com") > 1
    assert all(m.endswith("-etm@openssh.com") for m in modern["mac_algs"])
    weak = ("sha1", "cbc", "ssh-rsa", "ssh-dss", "group1", "arcfour", "md5")
    flat = [a for v in modern.values() for a in v]
    assert not [a for a in flat if any(w in a for w in weak) and a != "rsa-sha2-256"]
    assert "diffie-hellman-group14-sha1" in legacy["kex_algs"] and "aes128-cbc" in legacy["encryption_algs"]
    assert "ssh-rsa" in legacy["server_host_key_algs"] and "hmac-sha1" in legacy["mac_algs"]
    assert legacy["kex_algs"][:len(modern["kex_algs"])] == modern["kex_algs"]  # modern still preferred
    assert modern["compression_algs"] == ["none"]
