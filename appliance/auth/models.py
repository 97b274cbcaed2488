"""Users, sessions, the security policy and TOTP records (no I/O).

The caller type, `Principal`, lives in appliance/principal.py (access builds one too).
"""

from __future__ import annotations

import msgspec

from appliance import config
from appliance.principal import Principal

_AUTH_DEFAULTS = config.AuthConfig()  # the security policy's built-in defaults are [auth]'s


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    username: str
    role: str
    must_change_password: bool
    disabled: bool
    failed_logins: int
    locked_until: float
    created_at: float
    totp_enabled: bool = False
    password_changed_at: float = 0.0


class UserCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """A user with the password hash: only auth's own queries return it."""

    user: User
    password_hash: str


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A session as listed to users (never the id itself)."""

    user_id: int
    username: str
    created_at: float
    last_seen: float
    expires_at: float
    source: str
    user_agent: str
    handle: str = ""
    current: bool = False


class NewSession(msgspec.Struct, frozen=True, kw_only=True):
    """Returned once at login: the cookie value is not stored anywhere server-side."""

    token: str
    csrf_token: str
    principal: Principal


class SecondFactorRequired(msgspec.Struct, frozen=True, kw_only=True):
    """Returned by login when the password was right and a TOTP code must follow.

    No session exists yet; the pending state is bound to the pre-session cookie."""

    username: str
    expires_at: float


class SecurityPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Run-time security settings (AUTH-3, -4, -6, -7), editable by admins.

    Stored in the `settings` table; `[auth]` in the config file gives the defaults. The bounds
    and allowed values are [auth]'s constrained types (config.py), which
    `securitypolicy.validate_policy` reads and checks with plain-words messages per field; the
    fields here stay unconstrained so API input reaches that check instead of msgspec's. The
    built-in defaults are [auth]'s too."""

    password_min_length: int = _AUTH_DEFAULTS.password_min_length
    password_history: int = _AUTH_DEFAULTS.password_history
    require_composition: bool = _AUTH_DEFAULTS.require_composition
    totp_policy: str = _AUTH_DEFAULTS.totp_policy  # config.TotpPolicy
    session_idle_minutes: int = _AUTH_DEFAULTS.session_idle_minutes
    lockout_threshold: int = _AUTH_DEFAULTS.lockout_threshold
    lockout_minutes: int = _AUTH_DEFAULTS.lockout_minutes


class UserCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Input to create a user; the appliance generates the temporary password."""

    username: str
    role: str


class UserUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Admin changes to a user; None leaves a field as it is."""

    role: str | None = None
    disabled: bool | None = None


class TemporaryPassword(msgspec.Struct, frozen=True, kw_only=True):
    """A generated password shown once to the admin; the user must change it at first login."""

    user: User
    password: str


class TOTPEnrolment(msgspec.Struct, frozen=True, kw_only=True):
    """A seed awaiting confirmation: shown to its user only (text and QR)."""

    seed: str
    uri: str


class TOTPActivated(msgspec.Struct, frozen=True, kw_only=True):
    """2FA is on: the rotated session and the recovery codes, shown once."""

    session: NewSession
    recovery_codes: list[str]
