"""Limits on guessing, shared by every place that checks a secret (AUTH-4): sign-in, the
second factor, step-up, password changes and setup.

Three layers, in this order (NIST SP 800-63B 5.2.2: throttle first, lock out last):
- a per-address rate limit on attempts (throttle.Throttle), audited when it engages;
- a per-(address, account) failure budget, checked before any password check, so one
  address cannot add more than half the lockout threshold to an account's failure count;
- the account lockout itself, counted in the transaction that records the failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.auth import queries
from appliance.auth.models import User
from appliance.auth.throttle import AccountFailures, Throttle
from appliance.errors import RateLimitedError

if TYPE_CHECKING:
    from appliance.auth.context import AuthContext
    from appliance.store.connection import Connection

# Failures that count toward the lockout (an unknown, disabled or locked account adds nothing).
_COUNTED = ("wrong_password", "wrong_totp", "totp_replayed")


class Attempts:
    def __init__(self, ctx: AuthContext) -> None:
        self._ctx = ctx
        self._throttle = Throttle(limit=ctx.config.login_attempts_per_minute, window=60.0, clock=ctx.clock)
        self._failures = AccountFailures(clock=ctx.clock)

    def check_rate(self, source: str) -> None:
        """Count one attempt from `source`; RateLimitedError past the per-minute limit."""
        if not self._throttle.hit(source):
            raise RateLimitedError("Too many attempts from your address; wait a minute and try again.",
                                   retry_after=self._throttle.retry_after(source))

    async def check_rate_audited(self, source: str, name: str, endpoint: str) -> None:
        """`check_rate`, with the refusal audited (auth.throttle) under the name it was for."""
        try:
            self.check_rate(source)
        except RateLimitedError:
            await self._ctx.audit.record_refusal(
                Event.AUTH_THROTTLE, actor=Actor(type="anonymous", name=name[:64], source=source), outcome="denied",
                details={"endpoint": endpoint})
            raise

    async def check_budget(self, source: str, username: str, endpoint: str) -> None:
        """429 before any password check once this address used up its failures for this
        account (the same for unknown usernames: no enumeration)."""
        policy = self._ctx.policy.current
        key, window = AccountFailures.key(source, username), policy.lockout_minutes * 60.0
        if not self._failures.exhausted(key, self._ctx.policy.failure_limit(self._ctx.config.failures_per_address),
                                        window):
            return
        retry = self._failures.retry_after(key, window)
        await self._ctx.audit.record_refusal(
            Event.AUTH_THROTTLE, actor=Actor(type="anonymous", name=username[:64], source=source), outcome="denied",
            details={"endpoint": endpoint, "reason": "failures for this account from this address"})
        raise RateLimitedError(f"Too many failed attempts for this account from your address; try again in "
                               f"{max(1, round(retry / 60))} minute(s).", retry_after=retry)

    def note(self, source: str, username: str, ok: bool) -> None:
        """A proof from `source` for `username` passed (clears its budget) or failed (spends it)."""
        key = AccountFailures.key(source, username)
        if ok:
            self._failures.clear(key)
        else:
            self._failures.fail(key)

    def record_failure(self, conn: Connection, user: User | None, actor: Actor, reason: str, now: float) -> None:
        """In the caller's transaction: audit a failed sign-in proof and count it toward the lockout."""
        self._ctx.audit.record(conn, Event.AUTH_LOGIN_FAILURE, ts=now, actor=actor, outcome="failure",
                               target=f"user:{user.id}" if user else "", details={"reason": reason})
        if user is None or reason not in _COUNTED:
            return
        policy = self._ctx.policy.current
        current = queries.get_user(conn, user.id)  # re-read: concurrent failures must all count
        if current is None:
            return
        failed = current.failed_logins + 1
        if failed >= policy.lockout_threshold:
            queries.update_failed_logins(conn, user.id, 0, now + policy.lockout_minutes * 60)
            self._ctx.audit.record(conn, Event.AUTH_LOCKOUT, ts=now, actor=actor, outcome="denied",
                                   target=f"user:{user.id}",
                                   details={"failures": failed, "minutes": policy.lockout_minutes})
        else:
            queries.update_failed_logins(conn, user.id, failed, current.locked_until)
