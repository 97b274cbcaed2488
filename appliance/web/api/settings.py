"""/api/v1/settings (AUTH-3..7, ACL-3): the security policy and the IP allow list.

Changing either is a sensitive action: a policy change carries the key owner's
password (and TOTP code with 2FA) as step-up (api/proof.py); the allow list refuses a
list that would lock out the caller's own address.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, get, put

from appliance.auth.models import SecurityPolicy
from appliance.web.api.proof import Password, TotpCode, proven
from appliance.web.deps import actor, client, services
from appliance.web.guards import permission


class AllowListOut(msgspec.Struct, frozen=True, kw_only=True):
    """CIDR networks allowed to reach the appliance; empty: every address."""

    networks: list[str]


class AllowListIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    networks: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=256)]


class SecurityPolicyIn(SecurityPolicy, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The new policy, with the key owner's proof (step-up): `password`, and `totp_code` with 2FA."""

    password: Password
    totp_code: TotpCode | None = None


class SettingsOut(msgspec.Struct, frozen=True, kw_only=True):
    security: SecurityPolicy
    ip_allowlist: list[str]


@get("/api/v1/settings", guards=[permission("settings.security")], name="api_settings", tags=["settings"],
     summary="Read the security settings")
async def read_settings(request: Request) -> SettingsOut:
    svc = services(request)
    return SettingsOut(security=svc.auth.policy.current, ip_allowlist=[str(n) for n in svc.allowlist.networks()])


@put("/api/v1/settings/security", guards=[permission("settings.security")], name="api_settings_security",
     tags=["settings"], summary="Replace the security policy",
     description="Password, 2FA, session and lockout policy; each field is validated with a plain-words message. "
                 "Needs the key owner's password (and TOTP code with 2FA).")
async def update_security(request: Request, data: SecurityPolicyIn) -> SecurityPolicy:
    who = await proven(request, data.password, data.totp_code)
    policy = SecurityPolicy(**{name: getattr(data, name) for name in SecurityPolicy.__struct_fields__})
    return await services(request).auth.policy.update(who, policy, source=client(request))


@get("/api/v1/settings/ip-allowlist", guards=[permission("settings.allowlist")], name="api_allowlist_read",
     tags=["settings"], summary="Read the IP allow list")
async def read_allowlist(request: Request) -> AllowListOut:
    return AllowListOut(networks=[str(n) for n in services(request).allowlist.networks()])


@put("/api/v1/settings/ip-allowlist", guards=[permission("settings.allowlist")], name="api_allowlist_update",
     tags=["settings"], summary="Replace the IP allow list",
     description="CIDR v4/v6 networks or single addresses; an empty list allows everyone. "
                 "A list that leaves out your own address is refused (self-lockout guard).")
async def update_allowlist(request: Request, data: AllowListIn) -> AllowListOut:
    saved = await services(request).allowlist.replace(data.networks, caller=client(request), actor=actor(request))
    return AllowListOut(networks=[str(n) for n in saved])


ROUTES = [read_settings, update_security, read_allowlist, update_allowlist]
