"""STORE-3: sealed secrets open only with the right key and the right row."""

import os

import pytest

from appliance.crypto.vault import VaultError, aad_for, open_sealed, seal

KEY = os.urandom(32)


def test_round_trip_and_fresh_nonces():
    aad = aad_for("devices", 7, "password")
    a, b = seal(KEY, b"s3cret", aad), seal(KEY, b"s3cret", aad)
    assert a != b and b"s3cret" not in a
    assert open_sealed(KEY, a, aad) == b"s3cret"


@pytest.mark.parametrize("change", ["other row", "other purpose", "other key", "bit flip", "truncated", "garbage"])
def test_misplaced_or_tampered_blobs_do_not_open(change):
    aad = aad_for("devices", 7, "password")
    blob = seal(KEY, b"s3cret", aad)
    key = KEY
    if change == "other row":
        aad = aad_for("devices", 8, "password")
    elif change == "other purpose":
        aad = aad_for("devices", 7, "passphrase")
    elif change == "other key":
        key = os.urandom(32)
    elif change == "bit flip":
        blob = blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]
    elif change == "truncated":
        blob = blob[:10]
    else:
        blob = b"not a sealed value at all"
    with pytest.raises(VaultError) as err:
        open_sealed(key, blob, aad)
    assert "s3cret" not in str(err.value)


def test_short_spelling_and_load_or_create(tmp_path):
    from appliance.crypto import vault

    key = vault.load_or_create(tmp_path / "keys" / "vault.key")
    assert vault.load_or_create(tmp_path / "keys" / "vault.key") == key
    assert oct((tmp_path / "keys" / "vault.key").stat().st_mode & 0o777) == "0o600"
    blob = vault.seal(key, b"seed", vault.aad("users.totp_seed", 1))
    assert vault.open(key, blob, vault.aad("users.totp_seed", 1)) == b"seed"
    with pytest.raises(VaultError):
        vault.open(key, blob, vault.aad("users.totp_seed", 2))
