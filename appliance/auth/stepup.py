"""Step-up re-authentication (AUTH-8). Mixed into AuthService; HTTP-free.

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

import msgspec

from appliance.audit import log as audit
from appliance.audit.models import Actor
from appliance.auth import policy, queries
from appliance.auth.errors import ReauthRequiredError
from appliance.auth.models import Principal
from appliance.crypto import totp
from appliance.errors import ValidationError

REAUTH_SECONDS = 5 * 60  # step-up window (AUTH-8)
_NO_CODE = "Your account has two-factor sign-in: add a current code from your authenticator app (totp_code)."


def _actor(principal, source: str) -> Actor:
    return Actor(type=getattr(principal, "kind", "user"), name=principal.username, source=source)


class StepUpMixin:
    def require_recent_auth(self, principal: Principal) -> None:
        """Raise ReauthRequiredError unless the session proved its user in the last 5 minutes."""
        if self.clock.now() - principal.recent_auth > REAUTH_SECONDS:
            raise ReauthRequiredError()

    def has_recent_auth(self, principal: Principal) -> bool:
        return self.clock.now() - principal.recent_auth <= REAUTH_SECONDS

    async def reauthenticate(self, principal: Principal, *, secret: str, source: str) -> None:
        """Re-enter the password (or a TOTP code if 2FA is on) to open the step-up window."""
        await self._throttled(source, principal.username, "reauth")
        await self._check_failure_budget(source, principal.username, "reauth")
        actor = _actor(principal, source)
        now = self.clock.now()
        code = secret.strip()
        ok = False
        if principal.totp_enabled and len(code) == 6 and code.isdigit():
            try:
                await self.check_second_factor(principal.user_id, code, actor=actor, allow_recovery=False)
                ok = True
            except totp.TOTPError:
                ok = False
        else:
            creds = await self.db.read(lambda conn: queries.get_credentials_by_id(conn, principal.user_id))
            ok, _ = await self.hasher.verify(creds.password_hash if creds else None, secret[:policy.MAX_PASSWORD],
                                             source=source)

        def job(conn):
            if ok:
                queries.update_recent_auth(conn, principal.session_hash, now)
            audit.record(conn, ts=now, action="auth.reauth", actor=actor, outcome="success" if ok else "failure",
                         target=f"user:{principal.user_id}")
            if not ok:
                user = queries.get_user(conn, principal.user_id)
                self._record_failure(conn, user, actor, "wrong_password", now)

        await self.db.write(job)
        self._note_attempt(source, principal.username, ok)
        if not ok:
            raise ValidationError("That is not right. Enter your password (or a current authenticator code).",
                                  details={"secret": "That is not right."})

    async def confirm_owner(self, principal, *, password: str, totp_code: str | None, source: str):
        """Check the proof an API request carries for a sensitive action: the key owner's
        password and, when the owner has 2FA, a current TOTP code (recovery codes are not
        accepted here). Returns the principal with a fresh step-up time; ValidationError
        naming `password` or `totp_code` otherwise (nothing is changed)."""
        await self._throttled(source, principal.username, "step_up")
        await self._check_failure_budget(source, principal.username, "step_up")
        actor = _actor(principal, source)
        creds = await self.db.read(lambda conn: queries.get_credentials_by_id(conn, principal.user_id))
        ok, _ = await self.hasher.verify(creds.password_hash if creds else None, password[:policy.MAX_PASSWORD],
                                         source=source)
        problem = None if ok else ("password", "This is not your password.", "wrong_password")
        if ok and creds.user.totp_enabled:
            code = (totp_code or "").strip()
            if not code:
                problem = ("totp_code", _NO_CODE, "")
            else:
                try:
                    await self.check_second_factor(principal.user_id, code, actor=actor, allow_recovery=False)
                except totp.TOTPError as exc:
                    problem = ("totp_code", exc.message,
                               "totp_replayed" if isinstance(exc, totp.ReplayedTOTPError) else "wrong_totp")
        now = self.clock.now()

        def job(conn):
            audit.record(conn, ts=now, action="auth.reauth", actor=actor, outcome="failure" if problem else "success",
                         target=f"user:{principal.user_id}",
                         details={"via": "api", "reason": problem[2] or "totp_code_missing"} if problem else {"via": "api"})
            if problem and problem[2] and creds is not None:
                self._record_failure(conn, creds.user, actor, problem[2], now)

        await self.db.write(job)
        if problem is None or problem[2]:  # a missing code is no guess: it neither spends nor clears the budget
            self._note_attempt(source, principal.username, problem is None)
        if problem:
            raise ValidationError("The proof of identity was not accepted; nothing was changed.",
                                  details={problem[0]: problem[1]})
        return msgspec.structs.replace(principal, recent_auth=now)
