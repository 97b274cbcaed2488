"""API keys and their verifier (no I/O). An API request acts as an `appliance.principal.Principal` of kind api_key."""

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
