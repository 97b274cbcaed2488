"""STORE-3: sealed secrets open only with the right key and the right row."""

import os

import pytest

from appliance.crypto import keyfile, vault
from appliance.crypto.vault import VaultError, aad, seal

KEY = os.urandom(32)


def test_round_trip_and_fresh_nonces():
    where = aad("devices.password", 7)
    a, b = seal(KEY, b"s3cret", where), seal(KEY, b"s3cret", where)
    assert a != b and b"s3cret" not in a
    assert vault.open(KEY, a, where) == b"s3cret"


@pytest.mark.parametrize("change", ["other row", "other purpose", "other key", "bit flip", "truncated", "garbage"])
def test_misplaced_or_tampered_blobs_do_not_open(change):
    where = aad("devices.password", 7)
    blob = seal(KEY, b"s3cret", where)
    key = KEY
    if change == "other row":
        where = aad("devices.password", 8)
    elif change == "other purpose":
        where = aad("devices.passphrase", 7)
    elif change == "other key":
        key = os.urandom(32)
    elif change == "bit flip":
        blob = blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]
    elif change == "truncated":
        blob = blob[:10]
    else:
        blob = b"not a sealed value at all"
    with pytest.raises(VaultError) as err:
        vault.open(key, blob, where)
    assert "s3cret" not in str(err.value)


def test_with_a_key_file(tmp_path):
    path = tmp_path / "keys" / "vault.key"
    key = keyfile.create_key(path)
    assert keyfile.load_key(path) == key
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    blob = vault.seal(key, b"seed", vault.aad("users.totp_seed", 1))
    assert vault.open(key, blob, vault.aad("users.totp_seed", 1)) == b"seed"
    with pytest.raises(VaultError):
        vault.open(key, blob, vault.aad("users.totp_seed", 2))
