"""User administration, your own password, and local admin recovery (AUTH-3, -5, ACL-1).
HTTP-free.

Invariants (what must never happen):
- A non-admin reads or changes another user's account: such ids answer NotFoundError
  (404), the same as an id that does not exist (no enumeration).
- The last active admin is demoted or disabled (LastAdminError); only the local CLI
  `outpost reset-admin` recovers a lost admin.
- A user change (create, role change, enable, disable, password or 2FA reset) runs without
  a re-authentication in the last 5 minutes (ReauthRequiredError). API keys never count as
  one: API requests carry the owner's password (and TOTP code) for these (stepup.confirm_owner).
- A password, role, disable or reset change leaves the user's other sessions alive; the
  caller's own session is rotated (new id) when it survives.
- A password reset by an admin, a change by the user or a reset-admin leaves the user's API
  keys working (`password_replaced`, given by the composition root, revokes them in the
  same transaction).
- A password reaches the audit log, an error or a response; temporary passwords are
  returned once to the admin who made them and then exist only as argon2 hashes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.auth import policy, queries
from appliance.auth.errors import LastAdminError
from appliance.auth.models import NewSession, TemporaryPassword, User, UserCreate, UserUpdate
from appliance.auth.permissions import ROLES, ensure_allowed
from appliance.auth.sessions import ensure_self_or_admin
from appliance.auth.stepup import require_recent_auth
from appliance.errors import NotFoundError, ValidationError
from appliance.principal import Principal

if TYPE_CHECKING:
    from appliance.auth.attempts import Attempts
    from appliance.auth.context import AuthContext
    from appliance.auth.sessions import SessionService
    from appliance.store.connection import Connection

# fn(conn, user_id, actor, now, reason), run in the transaction that replaces a user's password.
PasswordReplaced = Callable[["Connection", int, Actor, float, str], object]
_TEMP_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_INVALID = "Please correct the highlighted fields."


def _ensure_admin(principal: Principal) -> None:
    ensure_allowed(principal.role, "users.manage")


class AccountService:
    def __init__(self, ctx: AuthContext, attempts: Attempts, sessions: SessionService, *,
                 password_replaced: PasswordReplaced) -> None:
        self._ctx = ctx
        self._attempts = attempts
        self._sessions = sessions
        self._password_replaced = password_replaced

    async def _require_user(self, user_id: int) -> User:
        user = await self._ctx.db.read(lambda conn: queries.get_user(conn, user_id))
        if user is None:
            raise NotFoundError("There is no such user.")
        return user

    def _temporary_password(self, username: str) -> str:
        length = max(20, self._ctx.policy.current.password_min_length)
        for _ in range(50):  # bounded; a random 20+ character string passes on the first try in practice
            raw = "".join(secrets.choice(_TEMP_ALPHABET) for _ in range(length))
            candidate = "-".join(raw[i:i + 5] for i in range(0, length, 5))
            if not self._ctx.policy.password_problems(candidate, username=username):
                return candidate
        raise RuntimeError("could not generate a temporary password")

    # ---- users (ACL-1, AUTH-5) -----------------------------------------------------------

    async def list_users(self, principal: Principal) -> list[User]:
        _ensure_admin(principal)
        return await self._ctx.db.read(queries.list_users)

    async def get_user(self, principal: Principal, user_id: int) -> User:
        """One user: yourself, or anyone for an admin (NotFoundError otherwise)."""
        ensure_self_or_admin(principal, user_id)
        return await self._require_user(user_id)

    async def create_user(self, principal: Principal, data: UserCreate, *, source: str) -> TemporaryPassword:
        """Create a user with a generated temporary password (changed at first login). Admin, step-up."""
        ctx = self._ctx
        _ensure_admin(principal)
        require_recent_auth(ctx.clock, principal)
        username = data.username.strip() if isinstance(data.username, str) else ""
        errors = {}
        if problem := policy.check_username(username):
            errors["username"] = problem
        if data.role not in ROLES:
            errors["role"] = "Choose one of: " + ", ".join(ROLES) + "."
        if errors:
            raise ValidationError(_INVALID, details=errors)
        password = self._temporary_password(username)
        password_hash = await ctx.hasher.hash(password)
        now = ctx.clock.now()

        def job(conn: Connection) -> User | None:
            if queries.get_user_by_name(conn, username):
                raise ValidationError(_INVALID, details={"username": "This username is already taken."})
            user_id = queries.insert_user(conn, username=username, role=data.role, password_hash=password_hash,
                                          must_change_password=True, now=now)
            ctx.audit.record(conn, Event.USER_CREATE, ts=now, actor=principal.actor(source), target=f"user:{user_id}",
                             details={"username": username, "role": data.role})
            return queries.get_user(conn, user_id)

        user = await ctx.db.write(job)
        assert user is not None  # inserted in the same transaction
        return TemporaryPassword(user=user, password=password)

    async def update_user(self, principal: Principal, user_id: int, change: UserUpdate, *, source: str) -> User:
        """Change a user's role and/or disabled flag (admin, step-up). Revokes the user's sessions.

        Every change needs a step-up, disabling too: it ends the user's sessions and can
        shut an admin out, so a stale or stolen session (or a bare API key) must not do it."""
        _ensure_admin(principal)
        if change.role is not None and change.role not in ROLES:
            raise ValidationError(_INVALID, details={"role": "Choose one of: " + ", ".join(ROLES) + "."})
        user = await self._require_user(user_id)
        role_changes = change.role is not None and change.role != user.role
        enabling = change.disabled is False and user.disabled
        disabling = change.disabled is True and not user.disabled
        require_recent_auth(self._ctx.clock, principal)
        if not (role_changes or enabling or disabling):
            return user
        now = self._ctx.clock.now()
        actor = principal.actor(source)
        reason = "role change" if role_changes else "disabled" if disabling else "enabled"

        def job(conn: Connection) -> User | None:
            current = queries.get_user(conn, user_id)
            if current is None:
                raise NotFoundError("There is no such user.")
            losing_admin = current.role == "admin" and not current.disabled and (
                disabling or (role_changes and change.role != "admin"))
            if losing_admin and queries.count_active_admins(conn) <= 1:
                raise LastAdminError()
            if role_changes and change.role is not None:
                queries.update_role(conn, user_id, change.role)
                self._ctx.audit.record(conn, Event.USER_ROLE_CHANGE, ts=now, actor=actor, target=f"user:{user_id}",
                                       details={"username": current.username, "old": current.role,
                                                "new": change.role})
            if enabling or disabling:
                queries.update_disabled(conn, user_id, disabling)
                self._ctx.audit.record(conn, Event.USER_DISABLE if disabling else Event.USER_ENABLE, ts=now,
                                       actor=actor, target=f"user:{user_id}", details={"username": current.username})
            self._sessions.revoke_all(conn, user_id, actor, now, reason)
            return queries.get_user(conn, user_id)

        return await self._written_user(job)

    async def _written_user(self, job: Callable[[Connection], User | None]) -> User:
        """Run a write job that changes a user and returns it re-read."""
        user = await self._ctx.db.write(job)
        if user is None:
            raise NotFoundError("There is no such user.")
        return user

    async def unlock_user(self, principal: Principal, user_id: int, *, source: str) -> User:
        """Clear a lockout and the failure count now (admin)."""
        _ensure_admin(principal)
        user = await self._require_user(user_id)
        now = self._ctx.clock.now()

        def job(conn: Connection) -> User | None:
            queries.update_failed_logins(conn, user_id, 0, 0)
            self._ctx.audit.record(conn, Event.USER_UNLOCK, ts=now, actor=principal.actor(source),
                                   target=f"user:{user_id}",
                                   details={"username": user.username, "was_locked": user.locked_until > now})
            return queries.get_user(conn, user_id)

        return await self._written_user(job)

    async def reset_password(self, principal: Principal, user_id: int, *, source: str) -> TemporaryPassword:
        """Give a user a new temporary password (admin, step-up); forced change; sessions revoked."""
        _ensure_admin(principal)
        require_recent_auth(self._ctx.clock, principal)
        user = await self._require_user(user_id)
        password = self._temporary_password(user.username)
        password_hash = await self._ctx.hasher.hash(password)
        now = self._ctx.clock.now()
        actor = principal.actor(source)

        def job(conn: Connection) -> User | None:
            queries.update_password(conn, user_id, password_hash, must_change=True, now=now)
            self._ctx.audit.record(conn, Event.USER_PASSWORD_RESET, ts=now, actor=actor, target=f"user:{user_id}",
                                   details={"username": user.username})
            self._sessions.revoke_all(conn, user_id, actor, now, "password reset")
            self._password_replaced(conn, user_id, actor, now, "password reset")
            return queries.get_user(conn, user_id)

        return TemporaryPassword(user=await self._written_user(job), password=password)

    async def reset_totp(self, principal: Principal, user_id: int, *, source: str) -> User:
        """Remove a user's 2FA and recovery codes (admin, step-up); sessions revoked."""
        _ensure_admin(principal)
        require_recent_auth(self._ctx.clock, principal)
        user = await self._require_user(user_id)
        now = self._ctx.clock.now()
        actor = principal.actor(source)

        def job(conn: Connection) -> User | None:
            queries.update_totp_seed(conn, user_id, None, 0)
            queries.replace_recovery_codes(conn, user_id, [])
            self._ctx.audit.record(conn, Event.MFA_TOTP_RESET, ts=now, actor=actor, target=f"user:{user_id}",
                                   details={"username": user.username, "was_enabled": user.totp_enabled})
            self._sessions.revoke_all(conn, user_id, actor, now, "2fa reset")
            return queries.get_user(conn, user_id)

        return await self._written_user(job)

    # ---- own password (AUTH-3, AUTH-5) --------------------------------------------------

    async def change_password(self, principal: Principal, *, current: str, new: str, confirm: str, source: str,
                              user_agent: str) -> NewSession:
        """Change your own password. Other sessions are revoked; yours gets a new id (returned)."""
        ctx = self._ctx
        await self._attempts.check_rate_audited(source, principal.username, "password_change")
        await self._attempts.check_budget(source, principal.username, "password_change")
        actor = principal.actor(source)
        creds = await ctx.db.read(lambda conn: queries.get_credentials_by_id(conn, principal.user_id))
        ok, _ = await ctx.hasher.verify(creds.password_hash if creds else None, current[:policy.MAX_PASSWORD],
                                        source=source)
        now = ctx.clock.now()
        if not ok or creds is None:
            await ctx.db.write(lambda conn: self._wrong_current_password(conn, principal, actor, now))
            self._attempts.note(source, principal.username, False)
            raise ValidationError(_INVALID, details={"current": "This is not your current password."})
        await self._check_new_password(principal, creds.password_hash, new, confirm)
        new_hash = await ctx.hasher.hash(new)

        def job(conn: Connection) -> None:
            queries.insert_password_history(conn, principal.user_id, creds.password_hash, now,
                                            keep=ctx.policy.current.password_history)
            queries.update_password(conn, principal.user_id, new_hash, must_change=False, now=now)
            ctx.audit.record(conn, Event.USER_PASSWORD_CHANGE, ts=now, actor=actor, target=f"user:{principal.user_id}",
                             details={"forced": principal.must_change_password})
            self._sessions.revoke_all(conn, principal.user_id, actor, now, "password change",
                                      keep=principal.session_hash)
            self._password_replaced(conn, principal.user_id, actor, now, "password change")

        await ctx.db.write(job)
        return await self._sessions.rotate(principal, actor, user_agent, now, "password change", proved=True)

    def _wrong_current_password(self, conn: Connection, principal: Principal, actor: Actor, now: float) -> None:
        """Audit the refused change and count the failure toward the lockout (one transaction)."""
        self._ctx.audit.record(conn, Event.USER_PASSWORD_CHANGE, ts=now, actor=actor, outcome="failure",
                               target=f"user:{principal.user_id}", details={"reason": "wrong current password"})
        self._attempts.record_failure(conn, queries.get_user(conn, principal.user_id), actor, "wrong_password", now)

    async def _check_new_password(self, principal: Principal, current_hash: str, new: str, confirm: str) -> None:
        """ValidationError naming `new` or `confirm` unless the new password may be used."""
        errors = {}
        if problems := self._ctx.policy.password_problems(new, username=principal.username):
            errors["new"] = " ".join(problems)
        elif new != confirm:
            errors["confirm"] = "The two passwords differ."
        elif await self._reused(principal.user_id, current_hash, new):
            keep = max(self._ctx.policy.current.password_history, 1)
            errors["new"] = f"Do not reuse one of your last {keep} passwords."
        if errors:
            raise ValidationError(_INVALID, details=errors)

    async def _reused(self, user_id: int, current_hash: str, new: str) -> bool:
        keep = self._ctx.policy.current.password_history
        if keep <= 0:
            return False
        old = await self._ctx.db.read(lambda conn: queries.list_password_history(conn, user_id, keep - 1))
        for stored in [current_hash, *old]:
            if (await self._ctx.hasher.verify(stored, new[:policy.MAX_PASSWORD]))[0]:
                return True
        return False

    # ---- local recovery (AUTH-5) ----------------------------------------------------------

    def reset_admin_sync(self, actor: Actor, username: str | None = None) -> tuple[str, str]:
        """`outpost reset-admin`: a temporary password for an admin (unlocked, enabled, 2FA
        cleared, sessions and API keys revoked), creating "admin" if no admin exists.
        `actor`: the CLI's (system, cli:<user>). Returns (username, password)."""
        ctx = self._ctx
        now = ctx.clock.now()

        def pick(conn: Connection) -> User | None:
            if username:
                return queries.get_user_by_name(conn, username)
            admins = [u for u in queries.list_users(conn) if u.role == "admin"]
            return next((u for u in admins if not u.disabled), admins[0] if admins else None)

        user = ctx.db.read_sync(pick)
        name = user.username if user else (username or "admin")
        if problem := policy.check_username(name):
            raise ValidationError("That is not a valid username.", details={"username": problem})
        password = self._temporary_password(name)
        password_hash = ctx.hasher.hash_sync(password)
        ctx.db.write_sync(lambda conn: self._recover_admin(conn, name, password_hash, actor, now))
        return name, password

    def _recover_admin(self, conn: Connection, name: str, password_hash: str, actor: Actor, now: float) -> None:
        found = queries.get_user_by_name(conn, name)
        if found is None:
            user_id = queries.insert_user(conn, username=name, role="admin", password_hash=password_hash,
                                          must_change_password=True, now=now)
            self._ctx.audit.record(conn, Event.USER_CREATE, ts=now, actor=actor, target=f"user:{user_id}",
                                   details={"username": name, "role": "admin"})
        else:
            user_id = found.id
            queries.update_password(conn, user_id, password_hash, must_change=True, now=now)
            queries.update_role(conn, user_id, "admin")
            queries.update_disabled(conn, user_id, False)
            queries.update_totp_seed(conn, user_id, None, 0)
            queries.replace_recovery_codes(conn, user_id, [])
            self._sessions.revoke_all(conn, user_id, actor, now, "reset-admin")
            self._password_replaced(conn, user_id, actor, now, "reset-admin")
        self._ctx.audit.record(conn, Event.USER_ADMIN_RECOVER, ts=now, actor=actor, target=f"user:{user_id}",
                               details={"username": name, "created": found is None})
