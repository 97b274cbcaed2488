"""API keys, the principal an API request acts as, and allow-list records (no I/O)."""

from __future__ import annotations

import msgspec


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as listed to its owner and admins: never the secret or its MAC."""

    id: str
    user_id: int
    username: str
    name: str
    role: str
    created_at: float
    expires_at: float
    revoked_at: float | None
    last_used_at: float | None
    last_used_ip: str

    @property
    def prefix(self) -> str:
        """The public part of the key, as the owner sees it in their scripts."""
        return f"op_{self.id}_"

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"


class IssuedApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key just created: `plaintext` is shown once and never again."""

    key: ApiKey
    plaintext: str


class KeyVerifier(msgspec.Struct, frozen=True, kw_only=True):
    """What authentication needs: only access's own queries return it."""

    id: str
    user_id: int
    username: str
    key_role: str
    owner_role: str
    key_rank: int
    owner_rank: int
    secret_mac: bytes
    expires_at: float
    revoked_at: float | None
    owner_disabled: bool
    last_used_at: float | None
    last_used_ip: str


class ApiPrincipal(msgspec.Struct, frozen=True, kw_only=True):
    """Who an API request acts as: the key's owner, limited to the key's role.

    Carries the same attributes as auth's session Principal, so `permission(...)`
    guards and the auth services apply unchanged. `recent_auth` is 0: a key is a bearer
    secret anyone who copied it can replay, so it is never a step-up by itself; sensitive
    API operations carry the owner's password (and TOTP code) and get a principal with a
    fresh `recent_auth` from AuthService.confirm_owner (web/api/proof.py).
    `session_hash` is empty: an API request has no session."""

    user_id: int
    username: str
    role: str
    key_id: str
    recent_auth: float
    session_hash: bytes = b""
    csrf_token: str = ""
    must_change_password: bool = False
    created_at: float = 0.0
    last_seen: float = 0.0
    handle: str = ""
    totp_enabled: bool = False
    needs_totp_enrolment: bool = False
    kind: str = "api_key"

    @property
    def pending_step(self) -> str | None:
        return None
