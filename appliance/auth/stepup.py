"""Step-up re-authentication (AUTH-8). HTTP-free.

Invariants (what must never happen):
- A session's step-up time (`recent_auth`) moves without its user re-entering a secret
  that proves who they are: only sign-in, /reauth (password or a current TOTP code) and
  a password change (the current password) set it to now. Rotating the session id after
  a 2FA change carries the previous time over (a code from a brand-new authenticator
  proves nothing about the person).
- An API request does a sensitive action on the strength of the key alone: user
  administration and key minting carry the owner's password, plus a current TOTP code
  when the owner has 2FA, in the request (`confirm_owner`), checked like a sign-in
  (throttled, audited, counted toward the lockout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import msgspec

from appliance.audit.events import Event
from appliance.auth import policy, queries
from appliance.auth.errors import ReauthRequiredError
from appliance.crypto import totp
from appliance.errors import ValidationError
from appliance.principal import Principal

if TYPE_CHECKING:
    from appliance.audit.models import Actor
    from appliance.auth.attempts import Attempts
    from appliance.auth.context import AuthContext
    from appliance.auth.models import UserCredentials
    from appliance.auth.secondfactor import SecondFactor
    from appliance.clock import Clock
    from appliance.store.connection import Connection

REAUTH_SECONDS = 5 * 60  # step-up window (AUTH-8)
_NO_CODE = "Your account has two-factor sign-in: add a current code from your authenticator app (totp_code)."


def has_recent_auth(clock: Clock, principal: Principal) -> bool:
    """Whether the caller proved who they are in the last 5 minutes (never for an API key alone)."""
    return clock.now() - principal.recent_auth <= REAUTH_SECONDS


def require_recent_auth(clock: Clock, principal: Principal) -> None:
    """Raise ReauthRequiredError unless the caller proved who they are in the last 5 minutes."""
    if not has_recent_auth(clock, principal):
        raise ReauthRequiredError()


class _Problem(NamedTuple):
    """Why an API request's proof was refused: the field to name, its message, the audit reason."""

    field: str
    message: str
    reason: str  # "" for a missing code: no guess, so it neither spends nor clears the budget


class StepUpService:
    def __init__(self, ctx: AuthContext, attempts: Attempts, second_factor: SecondFactor) -> None:
        self._ctx = ctx
        self._attempts = attempts
        self._second_factor = second_factor

    def require_recent_auth(self, principal: Principal) -> None:
        require_recent_auth(self._ctx.clock, principal)

    def has_recent_auth(self, principal: Principal) -> bool:
        return has_recent_auth(self._ctx.clock, principal)

    async def reauthenticate(self, principal: Principal, *, secret: str, source: str) -> None:
        """Re-enter the password (or a TOTP code if 2FA is on) to open the step-up window."""
        ctx = self._ctx
        await self._attempts.check_rate_audited(source, principal.username, "reauth")
        await self._attempts.check_budget(source, principal.username, "reauth")
        actor = principal.actor(source)
        now = ctx.clock.now()
        code = secret.strip()
        if principal.totp_enabled and len(code) == 6 and code.isdigit():
            try:
                await self._second_factor.check(principal.user_id, code, actor=actor, allow_recovery=False)
                ok = True
            except totp.TOTPError:
                ok = False
        else:
            creds = await ctx.db.read(lambda conn: queries.get_credentials_by_id(conn, principal.user_id))
            ok, _ = await ctx.hasher.verify(creds.password_hash if creds else None, secret[:policy.MAX_PASSWORD],
                                            source=source)

        def job(conn: Connection) -> None:
            if ok:
                queries.update_recent_auth(conn, principal.session_hash, now)
            ctx.audit.record(conn, Event.AUTH_REAUTH, ts=now, actor=actor, outcome="success" if ok else "failure",
                             target=f"user:{principal.user_id}")
            if not ok:
                user = queries.get_user(conn, principal.user_id)
                self._attempts.record_failure(conn, user, actor, "wrong_password", now)

        await ctx.db.write(job)
        self._attempts.note(source, principal.username, ok)
        if not ok:
            raise ValidationError("That is not right. Enter your password (or a current authenticator code).",
                                  details={"secret": "That is not right."})

    async def confirm_owner(self, principal: Principal, *, password: str, totp_code: str | None,
                            source: str) -> Principal:
        """Check the proof an API request carries for a sensitive action: the key owner's
        password and, when the owner has 2FA, a current TOTP code (recovery codes are not
        accepted here). Returns the principal with a fresh step-up time; ValidationError
        naming `password` or `totp_code` otherwise (nothing is changed)."""
        ctx = self._ctx
        await self._attempts.check_rate_audited(source, principal.username, "step_up")
        await self._attempts.check_budget(source, principal.username, "step_up")
        actor = principal.actor(source)
        creds = await ctx.db.read(lambda conn: queries.get_credentials_by_id(conn, principal.user_id))
        problem = await self._owner_problem(principal, creds, password, totp_code, actor, source)
        now = ctx.clock.now()

        def job(conn: Connection) -> None:
            details = {"via": "api", "reason": problem.reason or "totp_code_missing"} if problem else {"via": "api"}
            ctx.audit.record(conn, Event.AUTH_REAUTH, ts=now, actor=actor,
                             outcome="failure" if problem else "success", target=f"user:{principal.user_id}",
                             details=details)
            if problem and problem.reason and creds is not None:
                self._attempts.record_failure(conn, creds.user, actor, problem.reason, now)

        await ctx.db.write(job)
        if problem is None or problem.reason:
            self._attempts.note(source, principal.username, problem is None)
        if problem:
            raise ValidationError("The proof of identity was not accepted; nothing was changed.",
                                  details={problem.field: problem.message})
        return msgspec.structs.replace(principal, recent_auth=now)

    async def _owner_problem(self, principal: Principal, creds: UserCredentials | None, password: str,
                             totp_code: str | None, actor: Actor, source: str) -> _Problem | None:
        """What is wrong with the proof, or None: one argon2 check, then the code if 2FA is on."""
        ok, _ = await self._ctx.hasher.verify(creds.password_hash if creds else None,
                                              password[:policy.MAX_PASSWORD], source=source)
        if not ok or creds is None:
            return _Problem("password", "This is not your password.", "wrong_password")
        if not creds.user.totp_enabled:
            return None
        code = (totp_code or "").strip()
        if not code:
            return _Problem("totp_code", _NO_CODE, "")
        try:
            await self._second_factor.check(principal.user_id, code, actor=actor, allow_recovery=False)
        except totp.TOTPError as exc:
            return _Problem("totp_code", exc.message,
                            "totp_replayed" if isinstance(exc, totp.ReplayedTOTPError) else "wrong_totp")
        return None
