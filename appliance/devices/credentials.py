"""Credential checks and sealing (DEV-2, STORE-3).

A credential's secret (password, or private key and passphrase) is sealed as one
JSON document with AES-256-GCM (crypto/vault.py) and associated data naming this
column of this row: "credentials.secret:<id>". A blob moved to another row, or
altered, does not open. Only public facts of a key (type, bits, SHA256 fingerprint)
are stored in clear.
"""

from __future__ import annotations

import msgspec

from appliance.crypto import sshkeys, vault
from appliance.devices import validate
from appliance.devices.models import CredentialCreate, CredentialFields, DeviceSecret

_AAD_PURPOSE = "credentials.secret"  # associated data: this column of this row


class _Sealed(msgspec.Struct, frozen=True, omit_defaults=True):
    p: str | None = None  # password
    k: str | None = None  # private key text
    s: str | None = None  # passphrase


def seal_credential(key: bytes, credential_id: int, data: CredentialFields) -> bytes:
    payload = msgspec.json.encode(_Sealed(p=data.password, k=data.private_key, s=data.passphrase))
    return vault.seal(key, payload, vault.aad(_AAD_PURPOSE, credential_id))


def open_credential(key: bytes, credential_id: int, username: str, blob: bytes) -> DeviceSecret:
    """Open one sealed credential (VaultError if it was moved, damaged or the key is wrong)."""
    raw = vault.open(key, blob, vault.aad(_AAD_PURPOSE, credential_id))
    sealed = msgspec.json.decode(raw, type=_Sealed)
    return DeviceSecret(username=username, password=sealed.p, private_key=sealed.k, passphrase=sealed.s)


class KeyFacts(msgspec.Struct, frozen=True):
    key_type: str = ""
    bits: int = 0
    fingerprint: str = ""


def check_credential(data: CredentialCreate, *, require_secret: bool = True
                     ) -> tuple[CredentialFields, KeyFacts, dict[str, str]]:
    """Validate a credential (parsing a private key costs CPU: run it on the key pool).

    The secret used is the one its kind names (a key when `kind` is left out and a private
    key is given, else a password); the other is dropped."""
    errors: dict[str, str] = {}
    name = validate.name(data.name, errors, label="Credential name")
    username = validate.username(data.username, errors)
    facts = KeyFacts()
    password = private_key = passphrase = None
    kind = data.kind or ("key" if data.private_key else "password")
    if kind == "password":
        password = validate.secret_text(data.password, errors, "password", "password", require_secret)
    elif kind == "key":
        passphrase = validate.secret_text(data.passphrase, errors, "passphrase", "passphrase", False)
        if data.private_key:
            try:
                parsed = sshkeys.parse_private_key(data.private_key, passphrase)
                facts = KeyFacts(parsed.key_type, parsed.bits, parsed.fingerprint)
                private_key = data.private_key.replace("\r\n", "\n").strip() + "\n"
            except ValueError as exc:
                errors["private_key" if "passphrase" not in str(exc) else "passphrase"] = str(exc)
        elif require_secret:
            errors["private_key"] = "Paste the private key (OpenSSH or PEM)."
    else:
        errors["kind"] = "Choose password or key."
    clean = CredentialFields(name=name, username=username, kind=kind if kind in ("password", "key") else "password",
                             password=password, private_key=private_key, passphrase=passphrase)
    return clean, facts, errors
