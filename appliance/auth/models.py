"""Users, sessions and the signed-in principal (no I/O)."""

from __future__ import annotations

import msgspec


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    username: str
    role: str
    must_change_password: bool
    disabled: bool
    failed_logins: int
    locked_until: float
    created_at: float


class UserCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """A user with the password hash: only auth's own queries return it."""

    user: User
    password_hash: str


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is making the current request, resolved from the session cookie."""

    user_id: int
    username: str
    role: str
    session_hash: bytes
    csrf_token: str
    must_change_password: bool
    created_at: float
    last_seen: float


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A session as listed to users (never the id itself)."""

    user_id: int
    username: str
    created_at: float
    last_seen: float
    expires_at: float
    source: str
    user_agent: str


class NewSession(msgspec.Struct, frozen=True, kw_only=True):
    """Returned once at login: the cookie value is not stored anywhere server-side."""

    token: str
    csrf_token: str
    principal: Principal
