"""Keys derived from an operator passphrase (argon2id, RFC 9106) and key wrapping.

Used for encrypted backups (UPD-5) and the passphrase key source of the database
key (STORE-2): a passphrase becomes a 256-bit key-encryption key with argon2id and a
random 16-byte salt; the data key is sealed under it with AES-256-GCM.

Invariants (what must never happen):
- A passphrase, a derived key or a wrapped key's plaintext appears in an exception
  message or a log line.
- KDF parameters below the RFC 9106 low-memory profile are used to seal anything new
  (`KdfParams()` defaults are t=3, m=64 MiB, p=4); weaker parameters found in an
  existing file are accepted only within `MIN_*` bounds, so a tampered header cannot
  make us derive with trivially weak (or absurdly expensive) parameters.
- A wrapped key that does not decrypt yields `WrongPassphraseError`, never garbage.
"""

from __future__ import annotations

import base64
import os

import msgspec
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import OutpostError

KEY_BYTES = 32
SALT_BYTES = 16
MIN_TIME, MAX_TIME = 1, 10
MIN_MEMORY_KIB, MAX_MEMORY_KIB = 19456, 262144  # a tampered header cannot demand more than 256 MiB
MIN_LANES, MAX_LANES = 1, 8
WRAP_PREFIX = b"outpost-wrapped-key v1 "
# The one minimum for passphrases that seal something new (backups from the CLI, the UI and
# the scheduler; a new store passphrase). Files made before keep opening with theirs.
MIN_PASSPHRASE = 12


class KdfError(OutpostError):
    """A passphrase-derived key cannot be made or used."""

    code = "kdf_error"
    status = 400


class WrongPassphraseError(KdfError):
    code = "wrong_passphrase"


class PassphraseTooShortError(KdfError):
    code = "passphrase_too_short"


def check_new_passphrase(passphrase: bytes, what: str = "backup passphrase") -> None:
    """Refuse a passphrase for new sealed data shorter than MIN_PASSPHRASE characters (not bytes).

    What it seals (the database key among others) can be attacked offline, where only the
    passphrase's length and randomness stand against guessing. The message never holds it.
    """
    if len(passphrase.decode("utf-8", "replace")) < MIN_PASSPHRASE:
        raise PassphraseTooShortError(f"the {what} must have at least {MIN_PASSPHRASE} characters")


class KdfParams(msgspec.Struct, frozen=True, kw_only=True):
    """argon2id cost parameters (stored next to the salt so the key can be derived again)."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4

    def check(self) -> None:
        """Refuse parameters outside sane bounds (e.g. read from a tampered file)."""
        if not (MIN_TIME <= self.time_cost <= MAX_TIME and MIN_MEMORY_KIB <= self.memory_kib <= MAX_MEMORY_KIB
                and MIN_LANES <= self.parallelism <= MAX_LANES):
            raise KdfError("the key-derivation parameters are outside the accepted range (damaged or foreign file)")


def derive_key(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    """argon2id(passphrase, salt) -> 32-byte key (RFC 9106)."""
    params.check()
    if not passphrase:
        raise KdfError("the passphrase is empty")
    if len(salt) < SALT_BYTES:
        raise KdfError("the salt is too short")
    return hash_secret_raw(passphrase, salt, time_cost=params.time_cost, memory_cost=params.memory_kib,
                           parallelism=params.parallelism, hash_len=KEY_BYTES, type=Type.ID)


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


class _Wrapped(msgspec.Struct, frozen=True, kw_only=True):
    kdf: KdfParams
    salt: str
    nonce: str
    sealed: str


def wrap_key(key: bytes, passphrase: bytes, params: KdfParams | None = None) -> bytes:
    """Seal a 32-byte key under a passphrase; returns one text line (ends with a newline).

    The prefix and the KDF parameters are the associated data, so changing either
    makes the key fail to unwrap.
    """
    if len(key) != KEY_BYTES:
        raise KdfError("only 256-bit keys are wrapped")
    params = params or KdfParams()
    salt, nonce = new_salt(), os.urandom(12)
    kek = derive_key(passphrase, salt, params)
    aad = WRAP_PREFIX + msgspec.json.encode(params)
    sealed = AESGCM(kek).encrypt(nonce, key, aad)
    body = _Wrapped(kdf=params, salt=_b64(salt), nonce=_b64(nonce), sealed=_b64(sealed))
    return WRAP_PREFIX + msgspec.json.encode(body) + b"\n"


def is_wrapped(data: bytes) -> bool:
    return data.startswith(WRAP_PREFIX)


def unwrap_key(data: bytes, passphrase: bytes) -> bytes:
    """The key sealed by `wrap_key`; WrongPassphraseError if the passphrase is wrong."""
    if not is_wrapped(data):
        raise KdfError("this is not a passphrase-wrapped key")
    try:
        body = msgspec.json.decode(data[len(WRAP_PREFIX):].strip(), type=_Wrapped)
        salt, nonce, sealed = _unb64(body.salt), _unb64(body.nonce), _unb64(body.sealed)
    except (msgspec.DecodeError, ValueError):
        raise KdfError("the wrapped key is damaged") from None
    kek = derive_key(passphrase, salt, body.kdf)
    try:
        key = AESGCM(kek).decrypt(nonce, sealed, WRAP_PREFIX + msgspec.json.encode(body.kdf))
    except (InvalidTag, ValueError):
        raise WrongPassphraseError("the passphrase is wrong (or the wrapped key is damaged)") from None
    if len(key) != KEY_BYTES:
        raise KdfError("the wrapped key is damaged")
    return key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
