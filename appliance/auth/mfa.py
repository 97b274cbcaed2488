"""TOTP two-factor authentication for users (AUTH-6). Mixed into AuthService; HTTP-free.

Invariants (what must never happen):
- A seed is stored unsealed: seeds are sealed with the vault key (crypto/vault.py),
  bound to the user's row and column, on top of the encrypted database (STORE-3).
- 2FA becomes active before its user proved, with a code, that the authenticator works.
- A TOTP code is accepted twice: the last accepted step is stored per user and advanced
  with a compare-and-set, so two concurrent requests cannot both use one code.
- A recovery code works twice, or is stored other than as a digest.
- 2FA is set up, changed or removed without a re-authentication in the last 5 minutes
  (first-time enrolment too: whoever holds a stale session must not bind their own
  authenticator to the account); a change revokes the user's other sessions and rotates
  the current one, which keeps its previous step-up time (the new authenticator's code
  proves nothing about who is at the keyboard).
"""

from __future__ import annotations

from appliance.audit import log as audit
from appliance.audit.models import Actor
from appliance.auth import queries
from appliance.auth.models import NewSession, Principal, TOTPActivated, TOTPEnrolment
from appliance.crypto import tokens, totp, vault
from appliance.errors import ConflictError

ISSUER = "Outpost"
_SEED_AAD = "users.totp_seed"
_PENDING_AAD = "users.totp_pending"


class InvalidRecoveryCodeError(totp.TOTPError):
    code = "recovery_code_invalid"

    def __init__(self) -> None:
        super().__init__("That recovery code is not valid or has already been used.")


class NoPendingEnrolmentError(totp.TOTPError):
    code = "totp_not_started"

    def __init__(self) -> None:
        super().__init__("Start the set-up again: no authenticator is waiting for confirmation.")


def _actor(principal: Principal, source: str) -> Actor:
    return Actor(type="user", name=principal.username, source=source)


class MFAMixin:
    def _seal(self, seed: str, purpose: str, user_id: int) -> bytes:
        return vault.seal(self.vault_key, seed.encode(), vault.aad(purpose, user_id))

    def _open(self, blob: bytes, purpose: str, user_id: int) -> str:
        return vault.open(self.vault_key, blob, vault.aad(purpose, user_id)).decode()

    # ---- enrolment -----------------------------------------------------------------------

    async def begin_totp_enrolment(self, principal: Principal, *, source: str) -> TOTPEnrolment:
        """A new seed awaiting confirmation (step-up: first enrolment and replacement alike)."""
        self.require_recent_auth(principal)
        seed = totp.new_seed()
        sealed = self._seal(seed, _PENDING_AAD, principal.user_id)
        now = self.clock.now()

        def job(conn):
            queries.update_totp_pending(conn, principal.user_id, sealed)
            audit.record(conn, ts=now, action="mfa.totp.enrol.start", actor=_actor(principal, source),
                         target=f"user:{principal.user_id}")

        await self.db.write(job)
        return TOTPEnrolment(seed=seed, uri=totp.provisioning_uri(seed, principal.username, ISSUER))

    async def pending_totp_enrolment(self, principal: Principal) -> TOTPEnrolment | None:
        """The seed awaiting confirmation, to show again (None if none was started)."""
        row = await self.db.read(lambda conn: queries.get_totp(conn, principal.user_id))
        if row is None or row[1] is None:
            return None
        seed = self._open(row[1], _PENDING_AAD, principal.user_id)
        return TOTPEnrolment(seed=seed, uri=totp.provisioning_uri(seed, principal.username, ISSUER))

    async def confirm_totp_enrolment(self, principal: Principal, *, code: str, source: str,
                                     user_agent: str) -> TOTPActivated:
        """Activate the pending seed if `code` matches it; returns 10 recovery codes (shown once)
        and a rotated session. Other sessions of the user are revoked."""
        await self._throttled(source, principal.username, "totp_enrol")
        self.require_recent_auth(principal)
        pending = await self.pending_totp_enrolment(principal)
        if pending is None:
            raise NoPendingEnrolmentError()
        now = self.clock.now()
        actor = _actor(principal, source)
        try:
            step = totp.verify(pending.seed, code[:64], now=now, last_step=0)
        except totp.TOTPError:
            await self.db.write(lambda conn: audit.record(
                conn, ts=now, action="mfa.totp.enable", actor=actor, outcome="failure",
                target=f"user:{principal.user_id}", details={"reason": "wrong code"}))
            raise
        codes = totp.new_recovery_codes()
        sealed = self._seal(pending.seed, _SEED_AAD, principal.user_id)

        def job(conn):
            queries.update_totp_seed(conn, principal.user_id, sealed, step)  # the confirming code is spent
            queries.replace_recovery_codes(conn, principal.user_id, [totp.recovery_digest(c) for c in codes])
            audit.record(conn, ts=now, action="mfa.totp.enable", actor=actor, target=f"user:{principal.user_id}",
                         details={"replaced": principal.totp_enabled, "recovery_codes": len(codes)})
            self._revoke_all(conn, principal.user_id, actor, now, "2fa change", keep=principal.session_hash)

        await self.db.write(job)
        session = await self._rotate(principal, actor, user_agent, now, "2fa change", proved=False)
        return TOTPActivated(session=session, recovery_codes=codes)

    async def disable_totp(self, principal: Principal, *, source: str, user_agent: str) -> NewSession:
        """Turn your own 2FA off (step-up). Refused when the 2FA policy requires it for you."""
        self.require_recent_auth(principal)
        if self.policy.totp_policy == "all" or (self.policy.totp_policy == "admins" and principal.role == "admin"):
            raise ConflictError("The security policy requires two-factor sign-in for your account; "
                                "set up a new authenticator instead of turning it off.")
        now = self.clock.now()
        actor = _actor(principal, source)

        def job(conn):
            queries.update_totp_seed(conn, principal.user_id, None, 0)
            queries.replace_recovery_codes(conn, principal.user_id, [])
            audit.record(conn, ts=now, action="mfa.totp.disable", actor=actor, target=f"user:{principal.user_id}")
            self._revoke_all(conn, principal.user_id, actor, now, "2fa change", keep=principal.session_hash)

        await self.db.write(job)
        return await self._rotate(principal, actor, user_agent, now, "2fa change", proved=False)

    async def regenerate_recovery_codes(self, principal: Principal, *, source: str) -> list[str]:
        """Replace your recovery codes with 10 new ones (step-up); the old ones stop working."""
        self.require_recent_auth(principal)
        if not principal.totp_enabled:
            raise ConflictError("Set up two-factor sign-in first.")
        codes = totp.new_recovery_codes()
        now = self.clock.now()

        def job(conn):
            queries.replace_recovery_codes(conn, principal.user_id, [totp.recovery_digest(c) for c in codes])
            audit.record(conn, ts=now, action="mfa.recovery.regenerate", actor=_actor(principal, source),
                         target=f"user:{principal.user_id}", details={"count": len(codes)})

        await self.db.write(job)
        return codes

    async def recovery_codes_left(self, principal: Principal) -> int:
        return len(await self.db.read(lambda conn: queries.list_unused_recovery_codes(conn, principal.user_id)))

    # ---- verification (sign-in second step, step-up) ---------------------------------------

    async def check_second_factor(self, user_id: int, code: str, *, actor: Actor, allow_recovery: bool = True) -> str:
        """Accept a TOTP code (6 digits) or a recovery code for user_id; returns "totp" or "recovery".

        Raises InvalidTOTPError, ReplayedTOTPError or InvalidRecoveryCodeError."""
        code = code.strip()[:64]
        now = self.clock.now()
        compact = "".join(code.split())
        if compact.isdigit() or not allow_recovery:
            row = await self.db.read(lambda conn: queries.get_totp(conn, user_id))
            if row is None or row[0] is None:
                raise totp.InvalidTOTPError()
            seed = self._open(row[0], _SEED_AAD, user_id)
            step = totp.verify(seed, compact, now=now, last_step=row[2])
            if not await self.db.write(lambda conn: queries.update_totp_step(conn, user_id, step)):
                raise totp.ReplayedTOTPError()  # another request used this step a moment ago
            return "totp"
        digest = totp.recovery_digest(code)
        unused = await self.db.read(lambda conn: queries.list_unused_recovery_codes(conn, user_id))
        match = None
        for code_id, stored in unused:  # every comparison runs: no early exit
            if tokens.equal(stored, digest) and match is None:
                match = code_id

        def use(conn):
            if match is None or not queries.update_recovery_used(conn, match, now):
                return False
            audit.record(conn, ts=now, action="mfa.recovery.use", actor=actor, target=f"user:{user_id}",
                         details={"left": len(unused) - 1})
            return True

        if not await self.db.write(use):
            raise InvalidRecoveryCodeError()
        return "recovery"
