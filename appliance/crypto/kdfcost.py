"""The key-derivation cost an uploaded key file asks for, checked BEFORE anything is derived.

An encrypted key file names its own cost: an OpenSSH key its bcrypt-pbkdf rounds (a
32-bit field), PKCS#8 and PKCS#12 their PBKDF2 / PKCS#12-KDF iteration counts or scrypt
parameters. Opening a hostile file could otherwise burn a core for hours on one request
(issue 11, finding 8). The caps accept what current tools make, with room to spare:

- OpenSSH (bcrypt-pbkdf): at most MAX_BCRYPT_ROUNDS = 128 rounds. ssh-keygen's default is
  16; the often recommended `-a 100` passes. 128 rounds cost about 1.3 s of one core.
- PBKDF2, PKCS#5 v1 and PKCS#12 iteration counts: at most MAX_ITERATIONS = 1,000,000 per
  derivation (OpenSSL's default is 2048, Java and Windows use 2,000-10,000, OWASP's
  600,000 passes) and MAX_TOTAL_ITERATIONS = 3,000,000 for one file (a PKCS#12 file
  derives for its MAC, its encrypted certificates and each shrouded key).
- scrypt: at most MAX_SCRYPT_BYTES = 32 MiB of memory (128 * N * r; OpenSSL refuses more,
  its default N=16384, r=8 uses 16 MiB) and p at most MAX_SCRYPT_P = 4.

Refusals say what the file asks for and the limit ("key derivation cost 1600 rounds is
above the limit of 128"). Invariant: nothing here derives a key or reads a password.
"""

from __future__ import annotations

import binascii
import re
import struct

from appliance.crypto import der

MAX_BCRYPT_ROUNDS = 128
MAX_ITERATIONS = 1_000_000
MAX_TOTAL_ITERATIONS = 3_000_000
MAX_SCRYPT_BYTES = 32 << 20
MAX_SCRYPT_P = 4

PBES2 = "1.2.840.113549.1.5.13"
PBKDF2 = "1.2.840.113549.1.5.12"
SCRYPT = "1.3.6.1.4.1.11591.4.11"
PBES1 = {f"1.2.840.113549.1.5.{n}" for n in (1, 3, 4, 6, 10, 11)}  # PKCS#5 v1: {salt, iterations}
PKCS12_PBE = {f"1.2.840.113549.1.12.1.{n}" for n in range(1, 7)}  # RFC 7292 appendix C: {salt, iterations}

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_OPENSSH_MAGIC = b"openssh-key-v1\x00"
_UNREADABLE = "The private key could not be read; it is damaged or in an unsupported format."


class KeyFileError(ValueError):
    """A key file is refused; the message is safe to show (no key material, no password)."""


class KdfCostError(KeyFileError):
    """The file asks for a key derivation above the documented caps."""


class Budget:
    """Iterations one file may make us spend, per derivation and in all."""

    def __init__(self) -> None:
        self.total = 0

    def spend(self, iterations: int) -> None:
        if iterations < 1:
            raise KeyFileError("The key file is damaged: its key derivation has no iterations.")
        if iterations > MAX_ITERATIONS:
            raise KdfCostError(f"key derivation cost {iterations} iterations is above the limit of {MAX_ITERATIONS}")
        self.total += iterations
        if self.total > MAX_TOTAL_ITERATIONS:
            raise KdfCostError(f"key derivation cost {self.total} iterations for the whole file is above the limit "
                               f"of {MAX_TOTAL_ITERATIONS}")


def check_scrypt(n: int, r: int, p: int) -> None:
    if n < 2 or r < 1 or p < 1:
        raise KeyFileError("The key file is damaged: its scrypt parameters are impossible.")
    memory = 128 * n * r
    if memory > MAX_SCRYPT_BYTES or p > MAX_SCRYPT_P:
        raise KdfCostError(f"key derivation cost scrypt N={n}, r={r}, p={p} ({memory >> 20} MiB) is above the limit "
                           f"of {MAX_SCRYPT_BYTES >> 20} MiB and p={MAX_SCRYPT_P}")


def check_algorithm(alg: der.Element, budget: Budget) -> None:
    """Charge what the AlgorithmIdentifier of an encrypted key or content would derive."""
    try:
        oid = alg.child(0).oid()
        if oid == PBES2:
            kdf = alg.child(1).child(0)
            kdf_oid, params = kdf.child(0).oid(), kdf.child(1)
            if kdf_oid == PBKDF2:
                budget.spend(params.child(1).integer())
            elif kdf_oid == SCRYPT:
                check_scrypt(params.child(1).integer(), params.child(2).integer(), params.child(3).integer())
        elif oid in PBES1 or oid in PKCS12_PBE:
            budget.spend(alg.child(1).child(1).integer())
    except der.DerError:
        raise KeyFileError(_UNREADABLE) from None


def check_pkcs8(data: bytes, budget: Budget | None = None) -> None:
    """PKCS#8 EncryptedPrivateKeyInfo (DER): SEQUENCE { AlgorithmIdentifier, OCTET STRING }."""
    try:
        alg = der.read(data).child(0)
    except der.DerError:
        raise KeyFileError(_UNREADABLE) from None
    check_algorithm(alg, budget or Budget())


def check_openssh(blob: bytes) -> None:
    """openssh-key-v1 (OpenSSH PROTOCOL.key): magic, cipher, kdf name, kdf options (salt, rounds)."""
    if not blob.startswith(_OPENSSH_MAGIC):
        raise KeyFileError(_UNREADABLE)
    pos = len(_OPENSSH_MAGIC)
    fields = []
    for _ in range(3):  # cipher name, kdf name, kdf options
        if pos + 4 > len(blob):
            raise KeyFileError(_UNREADABLE)
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        if pos + 4 + length > len(blob):
            raise KeyFileError(_UNREADABLE)
        fields.append(blob[pos + 4:pos + 4 + length])
        pos += 4 + length
    _, kdf_name, options = fields
    if kdf_name != b"bcrypt":
        return  # "none" (not encrypted); anything else the loader refuses without deriving
    if len(options) < 4:
        raise KeyFileError(_UNREADABLE)
    (salt_len,) = struct.unpack(">I", options[:4])
    if len(options) != 4 + salt_len + 4:
        raise KeyFileError(_UNREADABLE)
    (rounds,) = struct.unpack(">I", options[4 + salt_len:])
    if rounds > MAX_BCRYPT_ROUNDS:
        raise KdfCostError(f"key derivation cost {rounds} rounds is above the limit of {MAX_BCRYPT_ROUNDS}")


def check_private_key_pem(data: bytes) -> None:
    """Check every private-key PEM block in `data`. KeyFileError on a refusal.

    OpenSSH blocks: bcrypt rounds. "ENCRYPTED PRIVATE KEY": PKCS#8. Any other "... PRIVATE
    KEY" block is checked too if its content has the PKCS#8 encrypted shape (a decoder may
    not care about the label). Traditional encrypted PEM (Proc-Type header) uses one MD5
    round: nothing to check.
    """
    for label, body in _PEM.findall(data):
        if not label.endswith(b"PRIVATE KEY") or b"Proc-Type:" in body:
            continue
        try:  # as leniently as the loaders decode, so we see what they would see
            blob = binascii.a2b_base64(body)
        except (binascii.Error, ValueError):
            raise KeyFileError(_UNREADABLE) from None
        if label == b"OPENSSH PRIVATE KEY":
            check_openssh(blob)
        elif label == b"ENCRYPTED PRIVATE KEY" or _looks_encrypted_pkcs8(blob):
            check_pkcs8(blob)


def _looks_encrypted_pkcs8(blob: bytes) -> bool:
    try:
        first = der.read(blob).child(0)
        return first.is_(der.SEQUENCE) and first.child(0).is_(der.OID)
    except der.DerError:
        return False
