"""/api/v1/api-keys (ACL-2): list, create (step-up: the owner's password, and TOTP code
with 2FA), read, revoke.

Object level: a key belongs to its creator; only holders of apikeys.admin see or
revoke other users' keys, and to everyone else such ids look absent (404).
A key minted with a key gets at most the calling key's role (never the owner's, if
higher); read-only keys (viewer, auditor: no apikeys.write) cannot mint or revoke.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, delete, get, post
from litestar.params import Parameter

from appliance.access.models import ApiKey
from appliance.auth.permissions import allowed
from appliance.clock import iso
from appliance.errors import PermissionDeniedError
from appliance.web.api.common import when
from appliance.web.api.proof import Password, TotpCode, proven
from appliance.web.deps import actor, principal, services
from appliance.web.guards import permission, writing_key

KeyId = Annotated[str, Parameter(max_length=64, description="The key's public id (12 hex characters).")]


class ApiKeyOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    prefix: str
    name: str
    role: str
    owner: str
    owner_id: int
    state: str
    created_at: str
    expires_at: str
    revoked_at: str | None
    last_used_at: str | None
    last_used_ip: str


class ApiKeyCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new key for yourself. `password` (and `totp_code` with 2FA) prove who you are (step-up)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    role: Annotated[str, msgspec.Meta(max_length=32)]
    password: Password
    totp_code: TotpCode | None = None
    expires_days: Annotated[int, msgspec.Meta(ge=1, le=365)] | None = None


class ApiKeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    """`api_key` is shown this once; only its HMAC is kept."""

    key: ApiKeyOut
    api_key: str


def key_out(key: ApiKey, now: float) -> ApiKeyOut:
    return ApiKeyOut(id=key.id, prefix=key.prefix, name=key.name, role=key.role, owner=key.username,
                     owner_id=key.user_id, state=key.state(now), created_at=iso(key.created_at),
                     expires_at=iso(key.expires_at), revoked_at=when(key.revoked_at),
                     last_used_at=when(key.last_used_at), last_used_ip=key.last_used_ip)


@get("/api/v1/api-keys", guards=[permission("apikeys.manage")], name="api_keys_list", tags=["api-keys"],
     summary="List API keys", description="Your keys; with all=true every user's keys (apikeys.admin).")
async def list_keys(request: Request, all: bool = False) -> list[ApiKeyOut]:
    who = principal(request)
    if all and not allowed(who.role, "apikeys.admin"):
        raise PermissionDeniedError("Your role does not allow listing other users' keys.",
                                    details={"permission": "apikeys.admin"})
    svc = services(request)
    now = svc.clock.now()
    return [key_out(k, now) for k in await svc.apikeys.list_keys(None if all else who.user_id)]


@post("/api/v1/api-keys", guards=[permission("apikeys.manage"), writing_key], name="api_keys_create",
      tags=["api-keys"], summary="Create an API key", status_code=201,
      description="Needs your password, and a TOTP code when you have 2FA (step-up). The role must be one both your "
                  "own role and the calling key's role cover. Not with a read-only key. The key is shown once.")
async def create_key(request: Request, data: ApiKeyCreate) -> ApiKeyCreated:
    svc = services(request)
    who = await proven(request, data.password, data.totp_code)
    issued = await svc.apikeys.create(owner_id=who.user_id, name=data.name, role=data.role, days=data.expires_days,
                                      actor=actor(request), caller_role=who.role)
    return ApiKeyCreated(key=key_out(issued.key, svc.clock.now()), api_key=issued.plaintext)


@get("/api/v1/api-keys/{key_id:str}", guards=[permission("apikeys.manage")], name="api_keys_get", tags=["api-keys"],
     summary="Read one API key")
async def get_key(request: Request, key_id: KeyId) -> ApiKeyOut:
    svc = services(request)
    who = principal(request)
    key = await svc.apikeys.get(key_id, viewer_id=who.user_id, see_all=allowed(who.role, "apikeys.admin"))
    return key_out(key, svc.clock.now())


@delete("/api/v1/api-keys/{key_id:str}", guards=[permission("apikeys.manage"), writing_key], name="api_keys_revoke",
        tags=["api-keys"], summary="Revoke an API key", status_code=200,
        description="Takes effect on the very next request made with the key. Not with a read-only key.")
async def revoke_key(request: Request, key_id: KeyId) -> ApiKeyOut:
    svc = services(request)
    who = principal(request)
    key = await svc.apikeys.revoke(key_id, by_user_id=who.user_id, revoke_any=allowed(who.role, "apikeys.admin"),
                                   actor=actor(request))
    return key_out(key, svc.clock.now())


ROUTES = [list_keys, create_key, get_key, revoke_key]
