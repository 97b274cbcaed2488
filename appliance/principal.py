"""Who is asking: the one caller type for browser sessions, API keys and the local CLI.

A `Principal` is resolved once per request (web/security.py from the session cookie,
web/apiauth.py from a bearer key) or built once per command (the CLI), and handed to the
capability services, which check its `role` and record `actor(source)` in the audit log.

It sits below `auth` and `access` (both build one, neither may import the other) and just
above `audit` (it names itself as an audit `Actor`).

Invariants (what must never happen):
- The audit log says a person did what an API key did: the actor type comes from `kind`,
  set only by the code that authenticated the caller.
- An API key counts as a recent re-authentication: keys carry `recent_auth = 0`, so every
  step-up check refuses them until the request proves the owner's password
  (AuthService.stepup.confirm_owner).
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from appliance.audit.models import Actor, ActorType


class Kind(StrEnum):
    """How the caller was authenticated; also the audit actor type."""

    USER = "user"  # a browser session (cookie)
    API_KEY = "api_key"  # a bearer API key acting for its owner
    SYSTEM = "system"  # the local CLI or the appliance itself


_ACTOR_TYPE: dict[Kind, ActorType] = {Kind.USER: "user", Kind.API_KEY: "api_key", Kind.SYSTEM: "system"}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The caller of a service method. Session-only fields are empty for other kinds."""

    user_id: int
    username: str
    role: str
    kind: Kind = Kind.USER
    session_hash: bytes = b""
    """SHA-256 of the session id (sessions only; an API request has no session)."""
    csrf_token: str = ""
    must_change_password: bool = False
    created_at: float = 0.0
    last_seen: float = 0.0
    handle: str = ""
    """Public random handle of this session (addresses it in pages; never the id)."""
    key_id: str = ""
    """Public id of the API key (API keys only)."""
    recent_auth: float = 0.0
    """When the caller last proved who they are (step-up, AUTH-8); 0 for API keys."""
    totp_enabled: bool = False
    needs_totp_enrolment: bool = False
    """The 2FA policy requires TOTP for this user and none is enrolled yet."""

    @property
    def pending_step(self) -> str | None:
        """What the user must do before anything else: "password", "totp" or None."""
        if self.must_change_password:
            return "password"
        if self.needs_totp_enrolment:
            return "totp"
        return None

    def actor(self, source: str) -> Actor:
        """This caller as the audit log names it."""
        return Actor(type=_ACTOR_TYPE[self.kind], name=self.username, source=source)
