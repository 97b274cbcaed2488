"""Loading and describing SSH keys without exposing secrets.

`load_private_key` turns OpenSSH/PEM text into a key object (never a path) and
refuses RSA keys under 2048 bits; `fingerprint` gives the SHA256 form users see
in OpenSSH (`ssh-keygen -lf`). Error messages never contain key material.
"""

from __future__ import annotations

import asyncssh

from appliance.ssh.errors import InvalidKeyError

MIN_RSA_BITS = 2048


def load_private_key(text: str, passphrase: str | None = None):
    """An asyncssh private key object from OpenSSH/PEM text; InvalidKeyError if unusable."""
    try:
        key = asyncssh.import_private_key(text.strip().encode() + b"\n", passphrase or None)
    except asyncssh.KeyEncryptionError:
        raise InvalidKeyError("The private key could not be decrypted: wrong or missing passphrase.") from None
    except (asyncssh.KeyImportError, ValueError, TypeError):
        raise InvalidKeyError("The private key is not in a supported OpenSSH or PEM format.") from None
    _check_strength(key)
    return key


def load_public_key(line: str):
    """An asyncssh public key from one OpenSSH public key line ("ssh-ed25519 AAAA... comment")."""
    try:
        key = asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError, TypeError):
        raise InvalidKeyError("The host key is not an OpenSSH public key line.") from None
    _check_strength(key)
    return key


def _check_strength(key) -> None:
    if key.algorithm == b"ssh-rsa" and key.pyca_key.key_size < MIN_RSA_BITS:
        raise InvalidKeyError(f"RSA keys under {MIN_RSA_BITS} bits are refused.")


def public_line(key) -> str:
    """The OpenSSH public key line (no comment) of a public or private key object."""
    algorithm, data = key.export_public_key("openssh").decode().split()[:2]
    return f"{algorithm} {data}"


def fingerprint(line_or_key) -> str:
    """SHA256:... fingerprint, as OpenSSH prints it."""
    key = load_public_key(line_or_key) if isinstance(line_or_key, str) else line_or_key
    return key.get_fingerprint("sha256")


def same_key(line_a: str, line_b: str) -> bool:
    """True if two public key lines hold the same key (comments ignored)."""
    return line_a.split()[:2] == line_b.split()[:2]
