"""/api/v1/users and /api/v1/sessions (ACL-1, AUTH-5, AUTH-7, AUTH-8): thin over AuthService.

Object-level rules live in the service: a non-admin asking for another user's
account or sessions gets 404, the same as for an id that does not exist.
Every change to a user (create, role, disable/enable, password or 2FA reset) carries
the key owner's proof in the body, as the browser asks for it (api/proof.py); holding
an admin key is not enough. Read-only keys (viewer, auditor) cannot end sessions.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.params import Parameter

from appliance.auth.models import SessionInfo, User, UserCreate, UserUpdate
from appliance.auth.permissions import Role
from appliance.clock import iso
from appliance.web.api.common import MAX_ID
from appliance.web.api.proof import Password, Proof, TotpCode, proven
from appliance.web.deps import client, principal, services
from appliance.web.guards import authenticated, permission, writing_key

UserId = Annotated[int, Parameter(ge=1, le=MAX_ID)]


class UserOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    username: str
    role: str
    disabled: bool
    locked: bool
    must_change_password: bool
    totp_enabled: bool
    created_at: str


class UserIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new user; `password` (and `totp_code`) prove the key's owner (step-up)."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    role: Role
    password: Password
    totp_code: TotpCode | None = None


class UserPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields left out stay as they are; `password` (and `totp_code`) prove the key's owner (step-up)."""

    password: Password
    totp_code: TotpCode | None = None
    role: Role | None = None
    disabled: bool | None = None


class UserWithPassword(msgspec.Struct, frozen=True, kw_only=True):
    """`temporary_password` is shown once; the user must change it at first sign-in."""

    user: UserOut
    temporary_password: str


class SessionOut(msgspec.Struct, frozen=True, kw_only=True):
    handle: str
    user_id: int
    username: str
    created_at: str
    last_seen: str
    expires_at: str
    source: str
    user_agent: str


def user_out(u: User, now: float) -> UserOut:
    return UserOut(id=u.id, username=u.username, role=u.role, disabled=u.disabled, locked=u.locked_until > now,
                   must_change_password=u.must_change_password, totp_enabled=u.totp_enabled,
                   created_at=iso(u.created_at))


def session_out(s: SessionInfo) -> SessionOut:
    return SessionOut(handle=s.handle, user_id=s.user_id, username=s.username, created_at=iso(s.created_at),
                      last_seen=iso(s.last_seen), expires_at=iso(s.expires_at), source=s.source,
                      user_agent=s.user_agent)


def _now(request: Request) -> float:
    return services(request).clock.now()


@get("/api/v1/users", guards=[permission("users.manage")], name="api_users_list", tags=["users"], summary="List users")
async def list_users(request: Request) -> list[UserOut]:
    now = _now(request)
    return [user_out(u, now) for u in await services(request).auth.accounts.list_users(principal(request))]


@post("/api/v1/users", guards=[permission("users.manage")], name="api_users_create", tags=["users"], status_code=201,
      summary="Create a user", description="Needs the key owner's password (and TOTP code with 2FA). Returns a "
                                           "temporary password, shown once; the user must change it.")
async def create_user(request: Request, data: UserIn) -> UserWithPassword:
    who = await proven(request, data.password, data.totp_code)
    temp = await services(request).auth.accounts.create_user(who, UserCreate(username=data.username, role=data.role),
                                                    source=client(request))
    return UserWithPassword(user=user_out(temp.user, _now(request)), temporary_password=temp.password)


@get("/api/v1/users/{user_id:int}", guards=[authenticated], name="api_users_get", tags=["users"],
     summary="Read a user", description="Yourself, or anyone for admins (others' ids answer 404).")
async def get_user(request: Request, user_id: UserId) -> UserOut:
    return user_out(await services(request).auth.accounts.get_user(principal(request), user_id), _now(request))


@patch("/api/v1/users/{user_id:int}", guards=[permission("users.manage")], name="api_users_update", tags=["users"],
       summary="Change a user's role or disabled flag",
       description="Needs the key owner's password (and TOTP code with 2FA). Revokes the user's sessions.")
async def update_user(request: Request, user_id: UserId, data: UserPatch) -> UserOut:
    who = await proven(request, data.password, data.totp_code)
    user = await services(request).auth.accounts.update_user(who, user_id,
                                                    UserUpdate(role=data.role, disabled=data.disabled),
                                                    source=client(request))
    return user_out(user, _now(request))


@post("/api/v1/users/{user_id:int}/unlock", guards=[permission("users.manage")], name="api_users_unlock",
      tags=["users"], status_code=200, summary="Unlock a locked account")
async def unlock_user(request: Request, user_id: UserId) -> UserOut:
    unlocked = await services(request).auth.accounts.unlock_user(principal(request), user_id, source=client(request))
    return user_out(unlocked, _now(request))


@post("/api/v1/users/{user_id:int}/password-reset", guards=[permission("users.manage")],
      name="api_users_reset_password", tags=["users"], status_code=200, summary="Reset a user's password",
      description="Needs the key owner's password (and TOTP code with 2FA). A new temporary password (shown once); "
                  "the user's sessions and API keys are revoked.")
async def reset_password(request: Request, user_id: UserId, data: Proof) -> UserWithPassword:
    who = await proven(request, data.password, data.totp_code)
    temp = await services(request).auth.accounts.reset_password(who, user_id, source=client(request))
    return UserWithPassword(user=user_out(temp.user, _now(request)), temporary_password=temp.password)


@post("/api/v1/users/{user_id:int}/totp-reset", guards=[permission("users.manage")], name="api_users_reset_totp",
      tags=["users"], status_code=200, summary="Remove a user's 2FA",
      description="Needs the key owner's password (and TOTP code with 2FA). The user's sessions are revoked.")
async def reset_totp(request: Request, user_id: UserId, data: Proof) -> UserOut:
    who = await proven(request, data.password, data.totp_code)
    user = await services(request).auth.accounts.reset_totp(who, user_id, source=client(request))
    return user_out(user, _now(request))


@get("/api/v1/sessions", guards=[authenticated], name="api_sessions_list", tags=["sessions"],
     summary="List browser sessions",
     description="Your sessions; user_id=N for another user's (admins); all=true for everyone's (admins).")
async def list_sessions(request: Request, user_id: Annotated[int | None, Parameter(ge=1, le=MAX_ID)] = None,
                        all: bool = False) -> list[SessionOut]:
    auth, who = services(request).auth, principal(request)
    found = await (auth.sessions.list_all_sessions(who) if all else auth.sessions.list_sessions(who, user_id))
    return [session_out(s) for s in found]


@delete("/api/v1/sessions/{handle:str}", guards=[authenticated, writing_key], name="api_sessions_revoke",
        tags=["sessions"], status_code=204, summary="Revoke a browser session",
        description="Yours, or anyone's for admins. Not with a read-only (viewer or auditor) key.")
async def revoke_session(request: Request, handle: Annotated[str, Parameter(max_length=64)]) -> None:
    await services(request).auth.sessions.revoke_session(principal(request), handle, source=client(request))


ROUTES = [list_users, create_user, get_user, update_user, unlock_user, reset_password, reset_totp, list_sessions,
          revoke_session]
