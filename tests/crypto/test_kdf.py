"""crypto/kdf.py: argon2id key derivation (RFC 9106) and passphrase key wrapping (STORE-2, UPD-5)."""

import os

import pytest

from appliance.crypto import kdf
from tests.conftest import FAST_ARGON2

FAST = kdf.KdfParams(**FAST_ARGON2)


def test_wrap_round_trip_and_wrong_passphrase() -> None:
    key = os.urandom(32)
    blob = kdf.wrap_key(key, b"pass phrase", FAST)
    assert kdf.is_wrapped(blob) and key.hex().encode() not in blob and b"pass phrase" not in blob
    assert kdf.unwrap_key(blob, b"pass phrase") == key
    with pytest.raises(kdf.WrongPassphraseError) as err:
        kdf.unwrap_key(blob, b"pass phrasE")
    assert "pass phrase" not in str(err.value)


def test_tampered_or_absurd_parameters_are_refused() -> None:
    blob = kdf.wrap_key(os.urandom(32), b"pp", FAST)
    with pytest.raises(kdf.WrongPassphraseError):  # parameters are associated data
        kdf.unwrap_key(blob.replace(b'"time_cost":1', b'"time_cost":2'), b"pp")
    with pytest.raises(kdf.KdfError, match="outside the accepted range"):
        kdf.unwrap_key(blob.replace(b'"memory_kib":19456', b'"memory_kib":99999999'), b"pp")
    with pytest.raises(kdf.KdfError, match="damaged"):
        kdf.unwrap_key(blob[:40], b"pp")
    assert kdf.derive_key(b"p", b"s" * 16, FAST) != kdf.derive_key(b"p", b"t" * 16, FAST)
