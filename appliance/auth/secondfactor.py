"""Checking a second factor (AUTH-6): a TOTP code or a recovery code for a user.

Used by sign-in (sessions.py), step-up (stepup.py) and TOTP management (mfa.py); it holds
no state of its own. Seeds are sealed with the vault key, bound to the user's row and
column (STORE-3), on top of the encrypted database.

Invariants (what must never happen):
- A TOTP code is accepted twice: the last accepted step is stored per user and advanced
  with a compare-and-set, so two concurrent requests cannot both use one code.
- A recovery code works twice, or is compared other than in constant time against every
  unused digest (no early exit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.auth import queries
from appliance.crypto import tokens, totp, vault

if TYPE_CHECKING:
    from appliance.auth.context import AuthContext
    from appliance.store.connection import Connection

SEED_AAD = "users.totp_seed"
PENDING_AAD = "users.totp_pending"


class InvalidRecoveryCodeError(totp.TOTPError):
    code = "recovery_code_invalid"

    def __init__(self) -> None:
        super().__init__("That recovery code is not valid or has already been used.")


class SecondFactor:
    def __init__(self, ctx: AuthContext) -> None:
        self._ctx = ctx

    def seal(self, seed: str, purpose: str, user_id: int) -> bytes:
        return vault.seal(self._ctx.vault_key, seed.encode(), vault.aad(purpose, user_id))

    def open(self, blob: bytes, purpose: str, user_id: int) -> str:
        return vault.open(self._ctx.vault_key, blob, vault.aad(purpose, user_id)).decode()

    async def check(self, user_id: int, code: str, *, actor: Actor, allow_recovery: bool = True) -> str:
        """Accept a TOTP code (6 digits) or a recovery code for user_id; returns "totp" or "recovery".

        Raises InvalidTOTPError, ReplayedTOTPError or InvalidRecoveryCodeError."""
        code = code.strip()[:64]
        compact = "".join(code.split())
        if compact.isdigit() or not allow_recovery:
            await self._check_totp(user_id, compact)
            return "totp"
        await self._use_recovery_code(user_id, code, actor)
        return "recovery"

    async def _check_totp(self, user_id: int, code: str) -> None:
        db = self._ctx.db
        row = await db.read(lambda conn: queries.get_totp(conn, user_id))
        if row is None or row[0] is None:
            raise totp.InvalidTOTPError()
        seed = self.open(row[0], SEED_AAD, user_id)
        step = totp.verify(seed, code, now=self._ctx.clock.now(), last_step=row[2])
        if not await db.write(lambda conn: queries.update_totp_step(conn, user_id, step)):
            raise totp.ReplayedTOTPError()  # another request used this step a moment ago

    async def _use_recovery_code(self, user_id: int, code: str, actor: Actor) -> None:
        now = self._ctx.clock.now()
        digest = totp.recovery_digest(code)
        unused = await self._ctx.db.read(lambda conn: queries.list_unused_recovery_codes(conn, user_id))
        match = None
        for code_id, stored in unused:  # every comparison runs: no early exit
            if tokens.equal(stored, digest) and match is None:
                match = code_id

        def use(conn: Connection) -> bool:
            if match is None or not queries.update_recovery_used(conn, match, now):
                return False
            self._ctx.audit.record(conn, Event.MFA_RECOVERY_USE, ts=now, actor=actor, target=f"user:{user_id}",
                                   details={"left": len(unused) - 1})
            return True

        if not await self._ctx.db.write(use):
            raise InvalidRecoveryCodeError()
