"""Step-up for API requests (AUTH-8; issue 11 findings 7 and 19).

A key is a bearer credential: whoever holds it can replay it, so holding it never counts
as a fresh re-authentication (an API key's `Principal.recent_auth` is 0 and every step-up check in
the services refuses it). Sensitive API operations (user administration, minting keys,
the security policy) carry the proof the browser asks for, in the JSON body: the key
owner's `password`, plus `totp_code` (a current authenticator code) when the owner has
two-factor sign-in. `proven()` checks it like a sign-in (throttled, audited, counted
toward the lockout) and returns the principal with a fresh step-up time.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request

from appliance.web.deps import client, principal, services

Password = Annotated[str, msgspec.Meta(max_length=1024, description=(
    "Step-up: the password of the API key's owner (checked like a sign-in; failures count toward the lockout)."))]
TotpCode = Annotated[str, msgspec.Meta(max_length=16, description=(
    "Step-up: a current 6-digit code from the owner's authenticator app; required when the owner has "
    "two-factor sign-in (recovery codes are not accepted here)."))]


class Proof(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The key owner's proof of identity for a sensitive action (step-up)."""

    password: Password
    totp_code: TotpCode | None = None


async def proven(request: Request, password: str, totp_code: str | None):
    """The calling principal with a fresh step-up time, or ValidationError naming the bad field."""
    return await services(request).auth.stepup.confirm_owner(principal(request), password=password, totp_code=totp_code,
                                                      source=client(request))
