"""The ways the TLS material fails; each message names the file and what to do, never a key."""

from __future__ import annotations

from appliance.errors import OutpostError


class TLSError(OutpostError):
    """The TLS material cannot be used; the message names the file and what to do."""

    code = "tls_error"
    status = 500


class TLSFileError(TLSError):
    """A TLS file is unreadable, damaged or inconsistent (key does not match certificate)."""

    code = "tls_file_invalid"


class TLSKeyPasswordError(TLSError):
    """A private key does not decrypt: wrong key password, or the file is damaged."""

    code = "tls_key_password"
