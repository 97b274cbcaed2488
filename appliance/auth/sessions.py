"""Sign-in (one or two steps) and server-side sessions (AUTH-2, -4, -6, -7). HTTP-free.

Invariants (what must never happen):
- A session id is stored, logged or shown: only its SHA-256 is stored, and pages address
  sessions by a separate random handle. A new id is issued at every sign-in and every
  privilege change (`rotate`); a rotation never resurrects a session revoked meanwhile.
- Unknown user, wrong password, locked and disabled accounts take different paths: each
  costs one argon2 verification and gets the same message (LoginFailedError).
- With 2FA on, a session exists before the second factor passed: the password step only
  records a pending sign-in bound to the browser's pre-session token (5 minutes, 5 tries).
- A session outlives its idle or absolute limit, or its user being disabled: `resolve`
  deletes it (audited) instead of answering for it.
- A non-admin sees or ends another user's sessions (NotFoundError, as for a missing one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.auth import policy, queries
from appliance.auth.errors import LoginFailedError, SessionEndedError
from appliance.auth.models import NewSession, SecondFactorRequired, SessionInfo, User
from appliance.auth.permissions import allowed, ensure_allowed
from appliance.crypto import tokens, totp
from appliance.errors import NotFoundError
from appliance.principal import Principal

if TYPE_CHECKING:
    from appliance.auth.attempts import Attempts
    from appliance.auth.context import AuthContext
    from appliance.auth.secondfactor import SecondFactor
    from appliance.store.connection import Connection

_LAST_SEEN_GRANULARITY = 30.0  # seconds; bounds session writes to one per half minute per session
PENDING_SECONDS = 5 * 60  # how long a password-checked sign-in waits for its TOTP code
PENDING_ATTEMPTS = 5  # wrong codes before the pending sign-in is dropped (start again with the password)


def ensure_self_or_admin(principal: Principal, user_id: int) -> None:
    """Another user's account or sessions answer 404 to non-admins, like a missing one."""
    if principal.user_id != user_id and not allowed(principal.role, "users.manage"):
        raise NotFoundError("There is no such user.")


class SessionService:
    def __init__(self, ctx: AuthContext, attempts: Attempts, second_factor: SecondFactor) -> None:
        self._ctx = ctx
        self._attempts = attempts
        self._second_factor = second_factor

    # ---- sign-in ---------------------------------------------------------------------------

    async def login(self, *, username: str, password: str, source: str, user_agent: str,
                    pre_session: str = "") -> NewSession | SecondFactorRequired:
        """Check a password. Without 2FA: a new session. With 2FA: SecondFactorRequired,
        and the caller continues with `login_second_factor` using the same pre-session token."""
        ctx = self._ctx
        await self._attempts.check_rate_audited(source, username, "login")
        username = username[:256]
        await self._attempts.check_budget(source, username, "login")
        creds = await ctx.db.read(lambda conn: queries.get_credentials(conn, username))
        # Always one argon2 verification, whoever asks: same time for every failure.
        matches, needs_rehash = await ctx.hasher.verify(creds.password_hash if creds else None,
                                                        password[:policy.MAX_PASSWORD], source=source)
        now = ctx.clock.now()
        user = creds.user if creds else None
        actor = Actor(type="user" if user else "anonymous", name=user.username if user else username[:64],
                      source=source)
        reason = ("unknown_user" if user is None else "disabled" if user.disabled
                  else "locked" if user.locked_until > now else None if matches else "wrong_password")
        if reason is not None or user is None:
            await ctx.db.write(lambda conn: self._attempts.record_failure(conn, user, actor, str(reason), now))
            self._attempts.note(source, username, False)
            raise LoginFailedError()
        self._attempts.note(source, username, True)
        if needs_rehash:
            await self._rehash(user, password, actor, now)
        if user.totp_enabled:
            return await self._pend(user, pre_session, actor, now)
        return await self.start(user, actor, user_agent, now, method="password")

    async def _rehash(self, user: User, password: str, actor: Actor, now: float) -> None:
        """Store the password again under the current argon2 parameters."""
        new_hash = await self._ctx.hasher.hash(password)

        def job(conn: Connection) -> None:
            queries.update_password_hash(conn, user.id, new_hash)
            self._ctx.audit.record(conn, Event.AUTH_PASSWORD_REHASH, ts=now, actor=actor, target=f"user:{user.id}")

        await self._ctx.db.write(job)

    async def _pend(self, user: User, pre_session: str, actor: Actor, now: float) -> SecondFactorRequired:
        """The password was right and 2FA is on: remember that for this browser only."""
        if not pre_session:
            raise LoginFailedError()
        expires = now + PENDING_SECONDS

        def job(conn: Connection) -> None:
            queries.delete_expired_pending(conn, now)
            queries.upsert_pending_login(conn, tokens.digest(pre_session), user.id, now, expires)
            self._ctx.audit.record(conn, Event.AUTH_LOGIN_PASSWORD_OK, ts=now, actor=actor, target=f"user:{user.id}")

        await self._ctx.db.write(job)
        return SecondFactorRequired(username=user.username, expires_at=expires)

    async def login_second_factor(self, *, pre_session: str, code: str, source: str, user_agent: str) -> NewSession:
        """Second sign-in step: a TOTP code or a recovery code for the pending sign-in.

        Raises LoginFailedError when there is no live pending sign-in (expired, too many
        attempts, or another browser), InvalidTOTPError/ReplayedTOTPError for a bad code."""
        db = self._ctx.db
        await self._attempts.check_rate_audited(source, "", "login_totp")
        now = self._ctx.clock.now()
        pre_hash = tokens.digest(pre_session or "-")
        pending = await db.read(lambda conn: queries.get_pending_login(conn, pre_hash))
        user = await db.read(lambda conn: queries.get_user(conn, pending[0])) if pending else None
        if pending is None or user is None or pending[1] <= now or pending[2] >= PENDING_ATTEMPTS:
            if pending is not None:
                await db.write(lambda conn: queries.delete_pending_login(conn, pre_hash))
            raise LoginFailedError()
        await self._attempts.check_budget(source, user.username, "login_totp")
        actor = Actor(type="user", name=user.username, source=source)
        if user.disabled or user.locked_until > now:
            await db.write(lambda conn: self._pending_failed(conn, pre_hash, user, actor, now, drop=True))
            raise LoginFailedError()
        try:
            method = await self._second_factor.check(user.id, code, actor=actor)
        except totp.TOTPError as exc:
            replayed = isinstance(exc, totp.ReplayedTOTPError)
            await db.write(lambda conn: self._pending_failed(conn, pre_hash, user, actor, now, replayed=replayed))
            self._attempts.note(source, user.username, False)
            raise
        self._attempts.note(source, user.username, True)
        await db.write(lambda conn: queries.delete_pending_login(conn, pre_hash))
        return await self.start(user, actor, user_agent, now, method=method)

    def _pending_failed(self, conn: Connection, pre_hash: bytes, user: User, actor: Actor, now: float, *,
                        drop: bool = False, replayed: bool = False) -> None:
        """A failed second step: drop the pending sign-in (account disabled or locked) or count
        a wrong code against it; either way audited and counted like a failed sign-in."""
        if drop:
            queries.delete_pending_login(conn, pre_hash)
            reason = "disabled" if user.disabled else "locked"
        else:
            queries.update_pending_attempts(conn, pre_hash)
            reason = "totp_replayed" if replayed else "wrong_totp"
        self._attempts.record_failure(conn, user, actor, reason, now)

    # ---- starting and rotating sessions -------------------------------------------------------

    async def start(self, user: User, actor: Actor, user_agent: str, now: float, *, method: str,
                    replace: bytes = b"", proved: bool = True, event: Event = Event.AUTH_LOGIN_SUCCESS) -> NewSession:
        """Insert a new session and audit it. With `replace` (rotation) the old session is
        deleted in the same transaction and its absolute expiry carries over; so does its
        step-up time unless `proved` (the user has just entered their password)."""
        token, csrf, handle = tokens.new_token(32), tokens.new_token(32), tokens.new_token(16)
        id_hash = tokens.digest(token)

        def job(conn: Connection) -> float | None:
            expires, recent = now + self._ctx.config.session_absolute_hours * 3600, now
            if replace:
                old = queries.get_principal(conn, replace)
                if old is None:  # revoked meanwhile: a rotation must not resurrect it
                    return None
                expires, recent = old[1], (now if proved else old[0].recent_auth)
                queries.delete_session(conn, replace)
            else:
                queries.update_failed_logins(conn, user.id, 0, 0)
            queries.insert_session(conn, id_hash=id_hash, user_id=user.id, csrf_token=csrf, now=now,
                                   expires_at=expires, source=actor.source, user_agent=user_agent[:256], handle=handle,
                                   recent_auth=recent)
            self._ctx.audit.record(conn, event, ts=now, actor=actor, target=f"user:{user.id}",
                                   details={"method": method})
            return recent

        recent_auth = await self._ctx.db.write(job)
        fresh = await self._ctx.db.read(lambda conn: queries.get_user(conn, user.id))
        if recent_auth is None or fresh is None:
            raise SessionEndedError()
        principal = Principal(user_id=user.id, username=user.username, role=fresh.role, session_hash=id_hash,
                              csrf_token=csrf, must_change_password=fresh.must_change_password,
                              created_at=now, last_seen=now, handle=handle, recent_auth=recent_auth,
                              totp_enabled=fresh.totp_enabled,
                              needs_totp_enrolment=self._ctx.policy.needs_enrolment(fresh.role, fresh.totp_enabled))
        return NewSession(token=token, csrf_token=csrf, principal=principal)

    async def rotate(self, principal: Principal, actor: Actor, user_agent: str, now: float, reason: str, *,
                     proved: bool) -> NewSession:
        """A new session id for the caller after a privilege change; the old id stops working.

        The new session keeps the old one's absolute expiry, and its step-up time unless
        `proved` (the user has just entered their current password)."""
        user = await self._ctx.db.read(lambda conn: queries.get_user(conn, principal.user_id))
        if user is None:
            raise SessionEndedError()
        return await self.start(user, actor, user_agent, now, method=reason, replace=principal.session_hash,
                                proved=proved, event=Event.AUTH_SESSION_ROTATE)

    # ---- resolving and ending sessions --------------------------------------------------------

    async def resolve(self, token: str, source: str, *, background: bool = False) -> Principal | None:
        """The principal for a session cookie value, or None if unknown, expired or disabled.

        `background`: the request is an automatic refresh (a page polling for fresh figures),
        not the user doing something, so it does not count as activity: the idle timeout
        keeps running (last_seen is not moved)."""
        if not token or len(token) > 128:
            return None
        db = self._ctx.db
        id_hash = tokens.digest(token)
        found = await db.read(lambda conn: queries.get_principal(conn, id_hash))
        if found is None:
            return None
        principal, expires_at, disabled = found
        now = self._ctx.clock.now()
        idle_limit = self._ctx.policy.current.session_idle_minutes * 60
        if disabled or now >= expires_at or now - principal.last_seen >= idle_limit:
            reason = "disabled" if disabled else "absolute" if now >= expires_at else "idle"
            await db.write(lambda conn: self._expire(conn, principal, id_hash, reason, source, now))
            return None
        if not background and now - principal.last_seen >= _LAST_SEEN_GRANULARITY:
            await db.write(lambda conn: queries.update_last_seen(conn, id_hash, now))
        if self._ctx.policy.needs_enrolment(principal.role, principal.totp_enabled):
            principal = msgspec.structs.replace(principal, needs_totp_enrolment=True)
        return principal

    def _expire(self, conn: Connection, principal: Principal, id_hash: bytes, reason: str, source: str,
                now: float) -> None:
        if queries.delete_session(conn, id_hash):
            self._ctx.audit.record(conn, Event.AUTH_SESSION_EXPIRE, ts=now, actor=principal.actor(source),
                                   target=f"user:{principal.user_id}", details={"reason": reason})

    async def logout(self, principal: Principal, source: str) -> None:
        now = self._ctx.clock.now()

        def job(conn: Connection) -> None:
            queries.delete_session(conn, principal.session_hash)
            self._ctx.audit.record(conn, Event.AUTH_LOGOUT, ts=now, actor=principal.actor(source),
                                   target=f"user:{principal.user_id}")

        await self._ctx.db.write(job)

    async def purge_expired_sessions(self) -> int:
        now = self._ctx.clock.now()
        cutoff = now - self._ctx.policy.current.session_idle_minutes * 60
        return await self._ctx.db.write(lambda conn: queries.delete_expired_sessions(conn, now=now, idle_cutoff=cutoff)
                                        + queries.delete_expired_pending(conn, now))

    def revoke_all(self, conn: Connection, user_id: int, actor: Actor, now: float, reason: str,
                   keep: bytes = b"") -> int:
        """In the caller's transaction: end every session of a user but `keep`, audited."""
        count = queries.delete_user_sessions(conn, user_id, keep=keep)
        if count:
            self._ctx.audit.record(conn, Event.AUTH_SESSION_REVOKE, ts=now, actor=actor, target=f"user:{user_id}",
                                   details={"count": count, "reason": reason})
        return count

    # ---- session lists (AUTH-7) -------------------------------------------------------------

    async def list_sessions(self, principal: Principal, user_id: int | None = None) -> list[SessionInfo]:
        """Your sessions (user_id None or yours), another user's (admin), current one marked."""
        target = principal.user_id if user_id is None else user_id
        ensure_self_or_admin(principal, target)
        return await self._ctx.db.read(lambda conn: queries.list_sessions(conn, target, principal.session_hash))

    async def list_all_sessions(self, principal: Principal) -> list[SessionInfo]:
        ensure_allowed(principal.role, "users.manage")
        return await self._ctx.db.read(lambda conn: queries.list_sessions(conn, None, principal.session_hash))

    async def revoke_session(self, principal: Principal, handle: str, *, source: str) -> None:
        """End one session by its public handle: your own, or anyone's for an admin."""
        handle = handle[:64]
        owner = await self._ctx.db.read(lambda conn: queries.get_session_owner(conn, handle))
        if owner is None or (owner != principal.user_id and not allowed(principal.role, "users.manage")):
            raise NotFoundError("There is no such session.")
        now = self._ctx.clock.now()

        def job(conn: Connection) -> None:
            if queries.delete_session_by_handle(conn, handle):
                self._ctx.audit.record(conn, Event.AUTH_SESSION_REVOKE, ts=now, actor=principal.actor(source),
                                       target=f"user:{owner}", details={"count": 1, "reason": "revoked"})

        await self._ctx.db.write(job)

    async def revoke_other_sessions(self, principal: Principal, user_id: int | None = None, *, source: str) -> int:
        """End every session of a user except the caller's own; returns how many."""
        target = principal.user_id if user_id is None else user_id
        ensure_self_or_admin(principal, target)
        now = self._ctx.clock.now()
        return await self._ctx.db.write(lambda conn: self.revoke_all(
            conn, target, principal.actor(source), now, "revoked", keep=principal.session_hash))
