"""TOTP (RFC 6238 over RFC 4226 HOTP) and recovery codes for two-factor sign-in (AUTH-6).

The only module that imports pyotp. Parameters are fixed: SHA-1, 30-second steps,
6 digits, 160-bit seeds (the RFC 4226 recommended length; what authenticator apps expect).

Invariants (what must never happen):
- A code is accepted only for the current step or one step either side.
- A code is never accepted twice: the caller stores the step returned by `verify`
  and passes it back as `last_step`; a step at or before it is refused as a replay,
  even inside the window (a distinct error, so the audit log can tell them apart).
- Codes are compared in constant time; seeds and codes never appear in messages.
- Recovery codes are stored only as SHA-256 digests (80 random bits each, so a
  digest cannot be brute-forced) and compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from urllib.parse import quote

import pyotp

from appliance.crypto import tokens
from appliance.errors import OutpostError

STEP_SECONDS = 30
DIGITS = 6
SEED_BYTES = 20  # 160 bits
WINDOW = 1  # steps accepted either side of the current one
RECOVERY_CODES = 10
_CODE = re.compile(r"^\d{6}$")
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper


class TOTPError(OutpostError):
    code = "totp_invalid"
    status = 400


class InvalidTOTPError(TOTPError):
    """Not a valid code for any step in the window (wrong, expired or malformed)."""

    def __init__(self) -> None:
        super().__init__("That code is not valid. Enter the 6-digit code your authenticator app shows now.")


class ReplayedTOTPError(TOTPError):
    """A valid code for a step that was already used: each code works once."""

    code = "totp_replayed"

    def __init__(self) -> None:
        super().__init__("That code has already been used. Wait for the next code (up to 30 seconds) and enter it.")


class MalformedSeedError(TOTPError):
    code = "totp_seed_invalid"

    def __init__(self) -> None:
        super().__init__("The TOTP seed is not valid base32 of 160 bits.")


def new_seed() -> str:
    """A fresh random 160-bit seed as unpadded base32 (32 characters)."""
    return base64.b32encode(secrets.token_bytes(SEED_BYTES)).decode().rstrip("=")


def parse_seed(text: str) -> str:
    """Normalise a base32 seed (spaces, case, padding tolerated); MalformedSeedError if not 160 bits."""
    cleaned = "".join(text.split()).upper().rstrip("=")
    if len(cleaned) != 32 or not re.fullmatch(r"[A-Z2-7]+", cleaned):
        raise MalformedSeedError()
    try:
        base64.b32decode(cleaned)
    except (binascii.Error, ValueError):
        raise MalformedSeedError() from None
    return cleaned


def provisioning_uri(seed: str, account: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read from the QR code (Key Uri Format)."""
    label = quote(f"{issuer}:{account}", safe=":@")
    return (f"otpauth://totp/{label}?secret={parse_seed(seed)}&issuer={quote(issuer)}"
            f"&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}")


def step_at(now: float) -> int:
    return int(now // STEP_SECONDS)


def code_at_step(seed: str, step: int) -> str:
    """The code for one step (tests and diagnostics)."""
    return pyotp.TOTP(parse_seed(seed), digits=DIGITS, interval=STEP_SECONDS).at(step * STEP_SECONDS)


def verify(seed: str, code: str, *, now: float, last_step: int) -> int:
    """Check code against the steps around now; return the matched step to store as last_step.

    Raises ReplayedTOTPError for a step <= last_step, InvalidTOTPError otherwise."""
    code = "".join(code.split())
    if not _CODE.match(code):
        raise InvalidTOTPError()
    current = step_at(now)
    matched = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # check every step (no early exit) so timing does not reveal which one matched
        if tokens.equal(code_at_step(seed, step), code) and matched is None:
            matched = step
    if matched is None:
        raise InvalidTOTPError()
    if matched <= last_step:
        raise ReplayedTOTPError()
    return matched


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Single-use recovery codes, 16 characters (80 bits) in groups of four."""
    out = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        out.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
    return out


def normalise_recovery_code(code: str) -> str:
    cleaned = "".join(ch for ch in code.lower() if ch.isalnum())[:64]
    return "-".join(cleaned[i:i + 4] for i in range(0, len(cleaned), 4))


def recovery_digest(code: str) -> bytes:
    """What is stored for a recovery code (typed any case, with or without dashes)."""
    return tokens.digest("outpost-recovery:" + normalise_recovery_code(code))
