"""Check every key derivation a PKCS#12 (.p12/.pfx, RFC 7292) file will cost, before opening it.

A PFX derives keys for its MAC, for each encrypted SafeContents (usually the
certificates) and for each shrouded key bag. The MAC's and the outer parameters are in
clear; bags inside an encrypted SafeContents are not, so that layer is decrypted here,
after its own cost was checked, to see them. Only the encryptions current tools use for
that layer are opened: PBES2 (PBKDF2 or scrypt, then AES-CBC or 3DES-CBC: OpenSSL 3's
default, Java 18+, Windows "AES256-SHA256") and the PKCS#12 3DES PBE (Windows
"TripleDES-SHA1", older Java for keys). RC2 and RC4 (legacy, "openssl pkcs12 -legacy") are
refused with a message saying how to re-export; PEM files remain the alternative.

Caps and their reasons: crypto/kdfcost.py. Invariants: nothing is derived before its cost
was checked; the password and the plaintext never reach a message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.crypto import der
from appliance.crypto.kdfcost import PBES2, PBKDF2, SCRYPT, Budget, KeyFileError, check_algorithm

DATA = "1.2.840.113549.1.7.1"
ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
SAFE_CONTENTS_BAG = "1.2.840.113549.1.12.10.1.6"
_PBE_3DES = {"1.2.840.113549.1.12.1.3": 24, "1.2.840.113549.1.12.1.4": 16}  # 3-key, 2-key
_CBC = {"2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24, "2.16.840.1.101.3.4.1.42": 32,
        "1.2.840.113549.3.7": 24}  # AES-128/192/256-CBC, DES-EDE3-CBC: key bytes
# PBKDF2 PRF OID -> hash constructor (a callable, so the type checker accepts the concrete classes)
_PRF: dict[str, Callable[[], hashes.HashAlgorithm]] = {
        "1.2.840.113549.2.7": hashes.SHA1, "1.2.840.113549.2.8": hashes.SHA224, "1.2.840.113549.2.9": hashes.SHA256,
        "1.2.840.113549.2.10": hashes.SHA384, "1.2.840.113549.2.11": hashes.SHA512}
_LEGACY = "The PKCS#12 file protects part of its content with a legacy cipher (RC2 or RC4, e.g. \"openssl pkcs12 " \
          "-legacy\"), which the appliance does not open. Export it again with AES (OpenSSL 3's default; Windows: " \
          "\"AES256-SHA256\"), or import the certificate chain and key as PEM files."


class Pkcs12PasswordError(KeyFileError):
    """The encrypted content does not open with this password."""


def check_pkcs12(data: bytes, password: bytes | None) -> None:
    """Raise KeyFileError (KdfCostError for a cost above the caps) before anything costly is derived."""
    budget = Budget()
    try:
        items = der.read(data).children()
        if len(items) < 2:
            raise der.DerError("no authSafe")
        if len(items) > 2:  # MacData: SEQUENCE { DigestInfo, salt, iterations DEFAULT 1 }
            mac = items[2].children()
            budget.spend(mac[2].integer() if len(mac) > 2 else 1)
        content_type, auth_safe = _content_info(items[1])
        if content_type != DATA:
            raise KeyFileError("The PKCS#12 file uses public-key integrity protection, which is not supported; "
                               "export it with a password.")
        for info in der.read(auth_safe.octets()).children():
            kind, body = _content_info(info)
            if kind == DATA:
                _check_bags(der.read(body.octets()), budget)
            elif kind == ENCRYPTED_DATA:
                _check_bags(der.read(_decrypt(body, password, budget)), budget)
            else:
                raise KeyFileError("The PKCS#12 file holds content encrypted to a public key, which is not supported.")
    except der.DerError:
        raise KeyFileError("The PKCS#12 file could not be opened: it is damaged or is not a PKCS#12 file.") from None


def _content_info(element: der.Element) -> tuple[str, der.Element]:
    """ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY }."""
    explicit = element.child(1)
    if not explicit.is_(0, der.CONTEXT):
        raise der.DerError("bad ContentInfo")
    return element.child(0).oid(), explicit.child(0)


def _check_bags(safe_contents: der.Element, budget: Budget) -> None:
    """SafeContents ::= SEQUENCE OF SafeBag { bagId, [0] EXPLICIT bagValue, attributes }."""
    for bag in safe_contents.children():
        bag_id, value = bag.child(0).oid(), bag.child(1).child(0)
        if bag_id == SHROUDED_KEY_BAG:  # EncryptedPrivateKeyInfo { AlgorithmIdentifier, data }
            check_algorithm(value.child(0), budget)
        elif bag_id == SAFE_CONTENTS_BAG:  # nested SafeContents (depth bounded by der.MAX_DEPTH)
            _check_bags(value, budget)


def _decrypt(encrypted_data: der.Element, password: bytes | None, budget: Budget) -> bytes:
    """EncryptedData { version, EncryptedContentInfo { type, algorithm, [0] IMPLICIT content } }."""
    info = encrypted_data.child(1)
    alg, sealed = info.child(1), info.child(2)
    if not sealed.is_(0, der.CONTEXT):
        raise der.DerError("bad EncryptedContentInfo")
    check_algorithm(alg, budget)  # the cost first: KdfCostError here derives nothing
    oid = alg.child(0).oid()
    if oid == PBES2:
        key, iv, cipher = _pbes2(alg.child(1), password or b"")
        candidates = [(key, iv, cipher)]
    elif oid in _PBE_3DES:
        salt, rounds = alg.child(1).child(0).octets(), alg.child(1).child(1).integer()
        candidates = [(_p12_kdf(p, salt, 1, rounds, _PBE_3DES[oid]), _p12_kdf(p, salt, 2, rounds, 8), TripleDES)
                      for p in _bmp_passwords(password)]
    else:
        raise KeyFileError(_LEGACY)
    for key, iv, cipher in candidates:
        plain = _cbc_decrypt(cipher, key, iv, sealed.octets())
        if plain is not None:
            return plain
    raise Pkcs12PasswordError("The PKCS#12 file could not be opened: the password is wrong.")


def _pbes2(params: der.Element, password: bytes):
    kdf, scheme = params.child(0), params.child(1)
    enc_oid = scheme.child(0).oid()
    if enc_oid not in _CBC:
        raise KeyFileError(_LEGACY)
    length, iv = _CBC[enc_oid], scheme.child(1).octets()
    kdf_oid, kp = kdf.child(0).oid(), kdf.children()[1]
    salt = kp.child(0).octets()
    if kdf_oid == PBKDF2:
        prf: Callable[[], hashes.HashAlgorithm] = hashes.SHA1
        for extra in kp.children()[2:]:
            if extra.is_(der.SEQUENCE):
                named = _PRF.get(extra.child(0).oid())
                if named is None:
                    raise KeyFileError("The PKCS#12 file uses an unsupported key-derivation hash.")
                prf = named
        key = PBKDF2HMAC(algorithm=prf(), length=length, salt=salt, iterations=kp.child(1).integer()).derive(password)
    elif kdf_oid == SCRYPT:
        key = Scrypt(salt=salt, length=length, n=kp.child(1).integer(), r=kp.child(2).integer(),
                     p=kp.child(3).integer()).derive(password)
    else:
        raise KeyFileError("The PKCS#12 file uses an unsupported key derivation.")
    return key, iv, TripleDES if enc_oid == "1.2.840.113549.3.7" else algorithms.AES


def _cbc_decrypt(cipher, key: bytes, iv: bytes, data: bytes) -> bytes | None:
    block = 8 if cipher is TripleDES else 16
    if len(iv) != block or not data or len(data) % block:
        return None
    decryptor = Cipher(cipher(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(block * 8).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        der.read(plain)  # a wrong password decrypts to noise, which is not one BER element
        return plain
    except (ValueError, der.DerError):
        return None


def _bmp_passwords(password: bytes | None) -> list[bytes]:
    """RFC 7292 B.1: the password as big-endian UTF-16 with a terminating NUL. OpenSSL
    tries both "no password" (empty string) and the empty password ("\\0\\0")."""
    if not password:
        return [b"", b"\x00\x00"]
    try:
        return [password.decode("utf-8").encode("utf-16-be") + b"\x00\x00"]
    except UnicodeDecodeError:
        raise Pkcs12PasswordError("The PKCS#12 file could not be opened: the password is wrong.") from None


def _p12_kdf(password: bytes, salt: bytes, purpose: int, rounds: int, size: int) -> bytes:
    """RFC 7292 appendix B.2 with SHA-1 (u = 20, v = 64): purpose 1 = key, 2 = IV."""
    v = 64
    block = bytearray(_repeat(salt, v) + _repeat(password, v))
    out = b""
    while len(out) < size:
        a = bytes([purpose]) * v + bytes(block)
        for _ in range(rounds):
            a = hashlib.sha1(a).digest()
        out += a
        b = int.from_bytes(_repeat(a, v), "big") + 1
        for j in range(0, len(block), v):
            chunk = (int.from_bytes(block[j:j + v], "big") + b) % (1 << (8 * v))
            block[j:j + v] = chunk.to_bytes(v, "big")
    return out[:size]


def _repeat(data: bytes, v: int) -> bytes:
    """`data` repeated up to the next multiple of v bytes (empty stays empty)."""
    if not data:
        return b""
    n = v * -(-len(data) // v)
    return (data * (n // len(data) + 1))[:n]
