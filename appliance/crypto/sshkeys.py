"""SSH key parsing and fingerprints (DEV-2, DEV-3), without asyncssh.

Private keys (OpenSSH or PEM, RFC 8709 ed25519, RFC 5656 ECDSA, RFC 8332 RSA) are
checked on input so a bad key is refused when it is entered, not at poll time.
Fingerprints are the OpenSSH form: "SHA256:" + unpadded base64 of SHA-256 over
the public key blob (RFC 4253 §6.6 wire encoding).

Invariants: no error message ever contains key material or a passphrase; RSA keys
under 2048 bits and DSA keys are refused; a key asking for a key-derivation cost above
the caps in kdfcost.py is refused before anything is derived.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from appliance.crypto import kdfcost

MIN_RSA_BITS = 2048
MAX_KEY_CHARS = 32_768
_PUBLIC_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")


class SSHKeyError(ValueError):
    """A key was refused; the message is safe to show (no key material)."""


class ParsedKey:
    """The public facts about a valid private key."""

    __slots__ = ("key_type", "bits", "public_line", "fingerprint")

    def __init__(self, key_type: str, bits: int, public_line: str, fingerprint: str) -> None:
        self.key_type, self.bits, self.public_line, self.fingerprint = key_type, bits, public_line, fingerprint


def _load(data: bytes, password: bytes | None):
    text = data.lstrip()
    if text.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        return serialization.load_ssh_private_key(data, password)
    if text.startswith(b"-----BEGIN"):
        return serialization.load_pem_private_key(data, password)
    raise SSHKeyError("This is not a private key in OpenSSH or PEM format.")


def _is_encrypted(data: bytes) -> bool:
    try:
        _load(data, None)
    except TypeError:
        return True  # "password was not given but private key is encrypted"
    except Exception:
        return False
    return False


def parse_private_key(text: str, passphrase: str | None = None) -> ParsedKey:
    """Check a private key (and its passphrase) and describe its public half; SSHKeyError if refused."""
    if not text or not text.strip():
        raise SSHKeyError("The private key is empty.")
    if len(text) > MAX_KEY_CHARS:
        raise SSHKeyError("The private key is too long to be an SSH key.")
    if "-----BEGIN" in text and "PUBLIC KEY" in text.split("\n", 1)[0]:
        raise SSHKeyError("This is a public key; paste the private key.")
    data = text.replace("\r\n", "\n").strip().encode("utf-8", "replace") + b"\n"
    password = passphrase.encode() if passphrase else None
    try:
        kdfcost.check_private_key_pem(data)  # before anything is derived (issue 11, finding 8)
    except kdfcost.KdfCostError as exc:
        raise SSHKeyError(f"The private key was refused: {exc}.") from None
    except kdfcost.KeyFileError as exc:
        raise SSHKeyError(str(exc)) from None
    try:
        key = _load(data, password)
    except SSHKeyError:
        raise
    except TypeError as exc:
        if "not encrypted" in str(exc):
            raise SSHKeyError("This key is not encrypted; leave the passphrase empty.") from None
        raise SSHKeyError("This key is encrypted; enter its passphrase.") from None
    except ValueError:
        if password and _is_encrypted(data):
            raise SSHKeyError("The passphrase does not open this key.") from None
        raise SSHKeyError("The private key could not be read; it is damaged or in an unsupported format.") from None
    except Exception:  # unsupported algorithms raise UnsupportedAlgorithm and friends
        raise SSHKeyError("The private key could not be read; it is damaged or in an unsupported format.") from None
    return _describe(key)


def _describe(key) -> ParsedKey:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        key_type, bits = "ssh-ed25519", 256
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise SSHKeyError("ECDSA keys must use the P-256, P-384 or P-521 curve.")
        bits = key.curve.key_size
        key_type = f"ecdsa-sha2-nistp{bits}"
    elif isinstance(key, rsa.RSAPrivateKey):
        bits = key.key_size
        if bits < MIN_RSA_BITS:
            raise SSHKeyError(f"RSA keys must have at least {MIN_RSA_BITS} bits; this one has {bits}.")
        key_type = "ssh-rsa"
    else:
        raise SSHKeyError("Only ed25519, ECDSA and RSA keys are accepted.")
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return ParsedKey(key_type, bits, line, fingerprint_of_key_line(line))


def _blob(key_line: str) -> tuple[str, bytes]:
    parts = key_line.strip().split()
    if len(parts) < 2 or parts[0] not in _PUBLIC_TYPES:
        raise SSHKeyError("This is not an OpenSSH public key line (for example \"ssh-ed25519 AAAA...\").")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise SSHKeyError("The public key is not valid base64.") from None
    # The blob starts with its own type name (RFC 4253 §6.6); a mismatch means a pasted mix-up.
    if len(blob) < 4 or blob[4:4 + int.from_bytes(blob[:4], "big")] != parts[0].encode():
        raise SSHKeyError("The public key data does not match its type.")
    return parts[0], blob


def normalise_key_line(key_line: str) -> str:
    """"type base64" without a comment; SSHKeyError if it is not a public key line."""
    key_type, blob = _blob(key_line)
    return f"{key_type} {base64.b64encode(blob).decode()}"


def fingerprint_of_key_line(key_line: str) -> str:
    """OpenSSH SHA256 fingerprint of a public key line; SSHKeyError (a ValueError) if malformed."""
    _, blob = _blob(key_line)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def same_public_key(a: str, b: str) -> bool:
    """True if both lines hold the same key (comments ignored)."""
    try:
        return _blob(a) == _blob(b)
    except SSHKeyError:
        return False


def parse_fingerprint(text: str) -> str:
    """Normalise an operator-entered SHA256 fingerprint ("SHA256:xxx", padding optional)."""
    value = text.strip()
    if value.upper().startswith("SHA256:"):
        value = "SHA256:" + value[7:]
    value = value.rstrip("=")
    if not _FINGERPRINT.match(value):
        raise SSHKeyError("Enter a SHA256 fingerprint as shown by ssh-keygen -lf (\"SHA256:\" and 43 characters).")
    return value
