"""Managing your own TOTP two-factor authentication (AUTH-6): enrol, confirm, turn off,
new recovery codes. HTTP-free. Checking a code is secondfactor.py's job.

Invariants (what must never happen):
- A seed is stored unsealed (secondfactor.py seals it with the vault key).
- 2FA becomes active before its user proved, with a code, that the authenticator works.
- 2FA is set up, changed or removed without a re-authentication in the last 5 minutes
  (first-time enrolment too: whoever holds a stale session must not bind their own
  authenticator to the account); a change revokes the user's other sessions and rotates
  the current one, which keeps its previous step-up time (the new authenticator's code
  proves nothing about who is at the keyboard).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.audit.events import Event
from appliance.auth import queries
from appliance.auth.models import NewSession, TOTPActivated, TOTPEnrolment
from appliance.auth.secondfactor import PENDING_AAD, SEED_AAD
from appliance.auth.stepup import require_recent_auth
from appliance.crypto import totp
from appliance.errors import ConflictError
from appliance.principal import Principal

if TYPE_CHECKING:
    from appliance.auth.attempts import Attempts
    from appliance.auth.context import AuthContext
    from appliance.auth.secondfactor import SecondFactor
    from appliance.auth.sessions import SessionService
    from appliance.store.connection import Connection

ISSUER = "Outpost"


class NoPendingEnrolmentError(totp.TOTPError):
    code = "totp_not_started"

    def __init__(self) -> None:
        super().__init__("Start the set-up again: no authenticator is waiting for confirmation.")


class TOTPService:
    def __init__(self, ctx: AuthContext, attempts: Attempts, sessions: SessionService,
                 second_factor: SecondFactor) -> None:
        self._ctx = ctx
        self._attempts = attempts
        self._sessions = sessions
        self._second_factor = second_factor

    async def begin_enrolment(self, principal: Principal, *, source: str) -> TOTPEnrolment:
        """A new seed awaiting confirmation (step-up: first enrolment and replacement alike)."""
        ctx = self._ctx
        require_recent_auth(ctx.clock, principal)
        seed = totp.new_seed()
        sealed = self._second_factor.seal(seed, PENDING_AAD, principal.user_id)
        now = ctx.clock.now()

        def job(conn: Connection) -> None:
            queries.update_totp_pending(conn, principal.user_id, sealed)
            ctx.audit.record(conn, Event.MFA_TOTP_ENROL_START, ts=now, actor=principal.actor(source),
                             target=f"user:{principal.user_id}")

        await ctx.db.write(job)
        return TOTPEnrolment(seed=seed, uri=totp.provisioning_uri(seed, principal.username, ISSUER))

    async def pending_enrolment(self, principal: Principal) -> TOTPEnrolment | None:
        """The seed awaiting confirmation, to show again (None if none was started)."""
        row = await self._ctx.db.read(lambda conn: queries.get_totp(conn, principal.user_id))
        if row is None or row[1] is None:
            return None
        seed = self._second_factor.open(row[1], PENDING_AAD, principal.user_id)
        return TOTPEnrolment(seed=seed, uri=totp.provisioning_uri(seed, principal.username, ISSUER))

    async def confirm_enrolment(self, principal: Principal, *, code: str, source: str,
                                user_agent: str) -> TOTPActivated:
        """Activate the pending seed if `code` matches it; returns 10 recovery codes (shown once)
        and a rotated session. Other sessions of the user are revoked."""
        ctx = self._ctx
        await self._attempts.check_rate_audited(source, principal.username, "totp_enrol")
        require_recent_auth(ctx.clock, principal)
        pending = await self.pending_enrolment(principal)
        if pending is None:
            raise NoPendingEnrolmentError()
        now = ctx.clock.now()
        actor = principal.actor(source)
        try:
            step = totp.verify(pending.seed, code[:64], now=now, last_step=0)
        except totp.TOTPError:
            await ctx.audit.record_refusal(Event.MFA_TOTP_ENABLE, ts=now, actor=actor, outcome="failure",
                                           target=f"user:{principal.user_id}", details={"reason": "wrong code"})
            raise
        codes = totp.new_recovery_codes()
        sealed = self._second_factor.seal(pending.seed, SEED_AAD, principal.user_id)

        def job(conn: Connection) -> None:
            queries.update_totp_seed(conn, principal.user_id, sealed, step)  # the confirming code is spent
            queries.replace_recovery_codes(conn, principal.user_id, [totp.recovery_digest(c) for c in codes])
            ctx.audit.record(conn, Event.MFA_TOTP_ENABLE, ts=now, actor=actor, target=f"user:{principal.user_id}",
                             details={"replaced": principal.totp_enabled, "recovery_codes": len(codes)})
            self._sessions.revoke_all(conn, principal.user_id, actor, now, "2fa change", keep=principal.session_hash)

        await ctx.db.write(job)
        session = await self._sessions.rotate(principal, actor, user_agent, now, "2fa change", proved=False)
        return TOTPActivated(session=session, recovery_codes=codes)

    async def disable(self, principal: Principal, *, source: str, user_agent: str) -> NewSession:
        """Turn your own 2FA off (step-up). Refused when the 2FA policy requires it for you."""
        ctx = self._ctx
        require_recent_auth(ctx.clock, principal)
        if ctx.policy.totp_required(principal.role):
            raise ConflictError("The security policy requires two-factor sign-in for your account; "
                                "set up a new authenticator instead of turning it off.")
        now = ctx.clock.now()
        actor = principal.actor(source)

        def job(conn: Connection) -> None:
            queries.update_totp_seed(conn, principal.user_id, None, 0)
            queries.replace_recovery_codes(conn, principal.user_id, [])
            ctx.audit.record(conn, Event.MFA_TOTP_DISABLE, ts=now, actor=actor, target=f"user:{principal.user_id}")
            self._sessions.revoke_all(conn, principal.user_id, actor, now, "2fa change", keep=principal.session_hash)

        await ctx.db.write(job)
        return await self._sessions.rotate(principal, actor, user_agent, now, "2fa change", proved=False)

    async def regenerate_recovery_codes(self, principal: Principal, *, source: str) -> list[str]:
        """Replace your recovery codes with 10 new ones (step-up); the old ones stop working."""
        ctx = self._ctx
        require_recent_auth(ctx.clock, principal)
        if not principal.totp_enabled:
            raise ConflictError("Set up two-factor sign-in first.")
        codes = totp.new_recovery_codes()
        now = ctx.clock.now()

        def job(conn: Connection) -> None:
            queries.replace_recovery_codes(conn, principal.user_id, [totp.recovery_digest(c) for c in codes])
            ctx.audit.record(conn, Event.MFA_RECOVERY_REGENERATE, ts=now, actor=principal.actor(source),
                             target=f"user:{principal.user_id}", details={"count": len(codes)})

        await ctx.db.write(job)
        return codes

    async def recovery_codes_left(self, principal: Principal) -> int:
        return len(await self._ctx.db.read(lambda conn: queries.list_unused_recovery_codes(conn, principal.user_id)))
