"""User administration, self-service passwords, session lists and the security policy
(AUTH-3, -5, -7, ACL-1). Mixed into AuthService; every method is HTTP-free.

Invariants (what must never happen):
- A non-admin reads or changes another user's account or sessions: such ids answer
  NotFoundError (404), the same as an id that does not exist (no enumeration).
- The last active admin is demoted or disabled (LastAdminError); only the local CLI
  `outpost reset-admin` recovers a lost admin.
- A user or policy change (create user, role change, enable, disable, password or 2FA
  reset, policy change) runs without a re-authentication in the last 5 minutes
  (ReauthRequiredError). API keys never count as one: API requests carry the owner's
  password (and TOTP code) for these (AuthService.confirm_owner).
- A password, role, disable or reset change leaves the user's other sessions alive;
  the caller's own session is rotated (new id) when it survives.
- A password reset by an admin or a change by the user leaves the user's API keys
  working (they are revoked in the same transaction: `password_replaced_hooks`).
- A password reaches the audit log, an error or a response; temporary passwords are
  returned once to the admin who made them and then exist only as argon2 hashes.
"""

from __future__ import annotations

import secrets

import msgspec

from appliance.audit import log as audit
from appliance.audit.models import Actor
from appliance.auth import policy, queries
from appliance.auth.errors import LastAdminError
from appliance.auth.models import (NewSession, Principal, SecurityPolicy, SessionInfo, TemporaryPassword, User,
                                   UserCreate, UserUpdate)
from appliance.auth.permissions import ROLES, allowed
from appliance.errors import NotFoundError, PermissionDeniedError, ValidationError

POLICY_KEY = "auth.security_policy"
TOTP_POLICIES = ("all", "admins", "optional")
_RANK = {role: i for i, role in enumerate(ROLES)}
_TEMP_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
POLICY_LIMITS = {  # field -> (min, max): the same bounds as [auth] in config.py
    "password_min_length": (8, 128), "password_history": (0, 24), "session_idle_minutes": (5, 60),
    "lockout_threshold": (3, 100), "lockout_minutes": (1, 1440),
}


def _actor(principal: Principal, source: str) -> Actor:
    # API-key principals carry kind="api_key": the audit must say a key did it.
    return Actor(type=getattr(principal, "kind", "user"), name=principal.username, source=source)


def validate_policy(values: dict) -> SecurityPolicy:
    """A SecurityPolicy from untrusted values; ValidationError naming each bad field in plain words."""
    errors: dict[str, str] = {}
    clean: dict = {}
    for name, (lo, hi) in POLICY_LIMITS.items():
        value = values.get(name)
        if isinstance(value, str):
            value = int(value.strip()) if value.strip().isdigit() and len(value.strip()) < 6 else None
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            errors[name] = f"Enter a whole number from {lo} to {hi}."
        else:
            clean[name] = value
    if values.get("totp_policy") not in TOTP_POLICIES:
        errors["totp_policy"] = "Choose one of: all, admins, optional."
    else:
        clean["totp_policy"] = values["totp_policy"]
    composition = values.get("require_composition", False)
    if composition not in (True, False, "on", "true", "false", ""):
        errors["require_composition"] = "Choose on or off."
    clean["require_composition"] = composition in (True, "on", "true")
    if errors:
        raise ValidationError("Please correct the highlighted fields.", details=errors)
    return SecurityPolicy(**clean)


class AccountsMixin:
    # ---- security policy (settings table; [auth] gives defaults) -----------------------

    def _load_policy(self, conn) -> SecurityPolicy:
        cfg = self.config
        defaults = {name: getattr(cfg, name) for name in SecurityPolicy.__struct_fields__}
        raw = queries.get_setting(conn, POLICY_KEY)
        if raw:
            try:
                defaults.update(msgspec.json.decode(raw))
            except msgspec.DecodeError:
                pass  # unreadable stored value: config defaults apply until an admin saves again
        try:
            return validate_policy(defaults)
        except ValidationError:
            return validate_policy({name: getattr(cfg, name) for name in SecurityPolicy.__struct_fields__})

    async def update_policy(self, principal: Principal, new: SecurityPolicy | dict, *, source: str) -> SecurityPolicy:
        """Save the security policy (admin, step-up); audited with old and new values."""
        self._ensure_admin(principal)
        self.require_recent_auth(principal)
        new = validate_policy(msgspec.structs.asdict(new) if isinstance(new, SecurityPolicy) else new)
        old = self.policy
        changes = {k: [getattr(old, k), getattr(new, k)] for k in SecurityPolicy.__struct_fields__
                   if getattr(old, k) != getattr(new, k)}
        now = self.clock.now()

        def job(conn):
            queries.upsert_setting(conn, POLICY_KEY, msgspec.json.encode(new).decode())
            audit.record(conn, ts=now, action="policy.security.update", actor=_actor(principal, source),
                         target="settings:security", details={"changes": changes})

        await self.db.write(job)
        self.policy = new
        return new

    def password_problems(self, password: str, *, username: str) -> list[str]:
        """Policy rules the password breaks (not reuse, which needs the stored hashes)."""
        return policy.check_password(password, username=username, min_length=self.policy.password_min_length,
                                     require_composition=self.policy.require_composition, hostname=self.hostname)

    # ---- object-level checks (ACL-1) -----------------------------------------------------

    def _ensure_admin(self, principal: Principal) -> None:
        if not allowed(principal.role, "users.manage"):
            raise PermissionDeniedError("Your role does not allow this.", details={"permission": "users.manage"})

    def _ensure_self_or_admin(self, principal: Principal, user_id: int) -> None:
        if principal.user_id != user_id and not allowed(principal.role, "users.manage"):
            raise NotFoundError("There is no such user.")

    async def _require_user(self, user_id: int) -> User:
        user = await self.db.read(lambda conn: queries.get_user(conn, user_id))
        if user is None:
            raise NotFoundError("There is no such user.")
        return user

    # ---- users (ACL-1, AUTH-5) -----------------------------------------------------------

    async def list_users(self, principal: Principal) -> list[User]:
        self._ensure_admin(principal)
        return await self.db.read(queries.list_users)

    async def get_user(self, principal: Principal, user_id: int) -> User:
        """One user: yourself, or anyone for an admin (NotFoundError otherwise)."""
        self._ensure_self_or_admin(principal, user_id)
        return await self._require_user(user_id)

    def _temporary_password(self, username: str) -> str:
        length = max(20, self.policy.password_min_length)
        for _ in range(50):  # bounded; a random 20+ character string passes on the first try in practice
            raw = "".join(secrets.choice(_TEMP_ALPHABET) for _ in range(length))
            candidate = "-".join(raw[i:i + 5] for i in range(0, length, 5))
            if not self.password_problems(candidate, username=username):
                return candidate
        raise RuntimeError("could not generate a temporary password")

    async def create_user(self, principal: Principal, data: UserCreate, *, source: str) -> TemporaryPassword:
        """Create a user with a generated temporary password (changed at first login). Admin, step-up."""
        self._ensure_admin(principal)
        self.require_recent_auth(principal)
        username = data.username.strip() if isinstance(data.username, str) else ""
        errors = {}
        if problem := policy.check_username(username):
            errors["username"] = problem
        if data.role not in ROLES:
            errors["role"] = "Choose one of: " + ", ".join(ROLES) + "."
        if errors:
            raise ValidationError("Please correct the highlighted fields.", details=errors)
        password = self._temporary_password(username)
        password_hash = await self.hasher.hash(password)
        now = self.clock.now()

        def job(conn):
            if queries.get_user_by_name(conn, username):
                return None
            user_id = queries.insert_user(conn, username=username, role=data.role, password_hash=password_hash,
                                          must_change_password=True, now=now)
            audit.record(conn, ts=now, action="user.create", actor=_actor(principal, source), target=f"user:{user_id}",
                         details={"username": username, "role": data.role})
            return queries.get_user(conn, user_id)

        user = await self.db.write(job)
        if user is None:
            raise ValidationError("Please correct the highlighted fields.",
                                  details={"username": "This username is already taken."})
        return TemporaryPassword(user=user, password=password)

    async def update_user(self, principal: Principal, user_id: int, change: UserUpdate, *, source: str) -> User:
        """Change a user's role and/or disabled flag (admin, step-up). Revokes the user's sessions.

        Every change needs a step-up, disabling too: it ends the user's sessions and can
        shut an admin out, so a stale or stolen session (or a bare API key) must not do it."""
        self._ensure_admin(principal)
        if change.role is not None and change.role not in ROLES:
            raise ValidationError("Please correct the highlighted fields.",
                                  details={"role": "Choose one of: " + ", ".join(ROLES) + "."})
        user = await self._require_user(user_id)
        role_changes = change.role is not None and change.role != user.role
        enabling = change.disabled is False and user.disabled
        disabling = change.disabled is True and not user.disabled
        self.require_recent_auth(principal)
        if not (role_changes or enabling or disabling):
            return user
        now = self.clock.now()
        actor = _actor(principal, source)

        def job(conn):
            current = queries.get_user(conn, user_id)
            losing_admin = current.role == "admin" and not current.disabled and (
                disabling or (role_changes and change.role != "admin"))
            if losing_admin and queries.count_active_admins(conn) <= 1:
                raise LastAdminError()
            if role_changes:
                queries.update_role(conn, user_id, change.role)
                audit.record(conn, ts=now, action="user.role.change", actor=actor, target=f"user:{user_id}",
                             details={"username": current.username, "old": current.role, "new": change.role})
            if enabling or disabling:
                queries.update_disabled(conn, user_id, disabling)
                audit.record(conn, ts=now, action="user.disable" if disabling else "user.enable", actor=actor,
                             target=f"user:{user_id}", details={"username": current.username})
            self._revoke_all(conn, user_id, actor, now, "role change" if role_changes else "disabled" if disabling else "enabled")
            return queries.get_user(conn, user_id)

        return await self.db.write(job)

    def _revoke_all(self, conn, user_id: int, actor: Actor, now: float, reason: str, keep: bytes = b"") -> int:
        count = queries.delete_user_sessions(conn, user_id, keep=keep)
        if count:
            audit.record(conn, ts=now, action="auth.session.revoke", actor=actor, target=f"user:{user_id}",
                         details={"count": count, "reason": reason})
        return count

    def _password_replaced(self, conn, user_id: int, actor: Actor, now: float, reason: str) -> None:
        """What the old password vouched for ends with it: the user's API keys (hooks set by
        the composition root run here, in the same transaction)."""
        for hook in self.password_replaced_hooks:
            hook(conn, user_id, actor, now, reason)

    async def unlock_user(self, principal: Principal, user_id: int, *, source: str) -> User:
        """Clear a lockout and the failure count now (admin)."""
        self._ensure_admin(principal)
        user = await self._require_user(user_id)
        now = self.clock.now()

        def job(conn):
            queries.update_failed_logins(conn, user_id, 0, 0)
            audit.record(conn, ts=now, action="user.unlock", actor=_actor(principal, source), target=f"user:{user_id}",
                         details={"username": user.username, "was_locked": user.locked_until > now})
            return queries.get_user(conn, user_id)

        return await self.db.write(job)

    async def reset_password(self, principal: Principal, user_id: int, *, source: str) -> TemporaryPassword:
        """Give a user a new temporary password (admin, step-up); forced change; sessions revoked."""
        self._ensure_admin(principal)
        self.require_recent_auth(principal)
        user = await self._require_user(user_id)
        password = self._temporary_password(user.username)
        password_hash = await self.hasher.hash(password)
        now = self.clock.now()
        actor = _actor(principal, source)

        def job(conn):
            queries.update_password(conn, user_id, password_hash, must_change=True, now=now)
            audit.record(conn, ts=now, action="user.password.reset", actor=actor, target=f"user:{user_id}",
                         details={"username": user.username})
            self._revoke_all(conn, user_id, actor, now, "password reset")
            self._password_replaced(conn, user_id, actor, now, "password reset")
            return queries.get_user(conn, user_id)

        return TemporaryPassword(user=await self.db.write(job), password=password)

    async def reset_totp(self, principal: Principal, user_id: int, *, source: str) -> User:
        """Remove a user's 2FA and recovery codes (admin, step-up); sessions revoked."""
        self._ensure_admin(principal)
        self.require_recent_auth(principal)
        user = await self._require_user(user_id)
        now = self.clock.now()
        actor = _actor(principal, source)

        def job(conn):
            queries.update_totp_seed(conn, user_id, None, 0)
            queries.replace_recovery_codes(conn, user_id, [])
            audit.record(conn, ts=now, action="mfa.totp.reset", actor=actor, target=f"user:{user_id}",
                         details={"username": user.username, "was_enabled": user.totp_enabled})
            self._revoke_all(conn, user_id, actor, now, "2fa reset")
            return queries.get_user(conn, user_id)

        return await self.db.write(job)

    # ---- own password (AUTH-3, AUTH-5) --------------------------------------------------

    async def change_password(self, principal: Principal, *, current: str, new: str, confirm: str, source: str,
                              user_agent: str) -> NewSession:
        """Change your own password. Other sessions are revoked; yours gets a new id (returned)."""
        await self._throttled(source, principal.username, "password_change")
        await self._check_failure_budget(source, principal.username, "password_change")
        actor = _actor(principal, source)
        creds = await self.db.read(lambda conn: queries.get_credentials_by_id(conn, principal.user_id))
        ok, _ = await self.hasher.verify(creds.password_hash, current[:policy.MAX_PASSWORD], source=source)
        now = self.clock.now()
        if not ok:
            await self.db.write(lambda conn: (
                audit.record(conn, ts=now, action="user.password.change", actor=actor, outcome="failure",
                             target=f"user:{principal.user_id}", details={"reason": "wrong current password"}),
                self._record_failure(conn, creds.user, actor, "wrong_password", now)))
            self._note_attempt(source, principal.username, False)
            raise ValidationError("Please correct the highlighted fields.",
                                  details={"current": "This is not your current password."})
        errors = {}
        if problems := self.password_problems(new, username=principal.username):
            errors["new"] = " ".join(problems)
        elif new != confirm:
            errors["confirm"] = "The two passwords differ."
        elif await self._reused(principal.user_id, creds.password_hash, new):
            errors["new"] = (f"Do not reuse one of your last {max(self.policy.password_history, 1)} passwords.")
        if errors:
            raise ValidationError("Please correct the highlighted fields.", details=errors)
        new_hash = await self.hasher.hash(new)

        def job(conn):
            queries.insert_password_history(conn, principal.user_id, creds.password_hash, now,
                                            keep=self.policy.password_history)
            queries.update_password(conn, principal.user_id, new_hash, must_change=False, now=now)
            audit.record(conn, ts=now, action="user.password.change", actor=actor, target=f"user:{principal.user_id}",
                         details={"forced": principal.must_change_password})
            self._revoke_all(conn, principal.user_id, actor, now, "password change", keep=principal.session_hash)
            self._password_replaced(conn, principal.user_id, actor, now, "password change")

        await self.db.write(job)
        return await self._rotate(principal, actor, user_agent, now, "password change", proved=True)

    async def _reused(self, user_id: int, current_hash: str, new: str) -> bool:
        keep = self.policy.password_history
        if keep <= 0:
            return False
        old = await self.db.read(lambda conn: queries.list_password_history(conn, user_id, keep - 1))
        for stored in [current_hash, *old]:
            if (await self.hasher.verify(stored, new[:policy.MAX_PASSWORD]))[0]:
                return True
        return False

    async def _rotate(self, principal: Principal, actor: Actor, user_agent: str, now: float, reason: str, *,
                      proved: bool) -> NewSession:
        """A new session id for the caller after a privilege change; the old id stops working.

        The new session keeps the old one's absolute expiry, and its step-up time unless
        `proved` (the user has just entered their current password)."""
        user = await self._require_user(principal.user_id)
        return await self._start_session(user, actor, user_agent, now, method=reason, replace=principal.session_hash,
                                         proved=proved, action="auth.session.rotate")

    # ---- sessions (AUTH-7) ---------------------------------------------------------------

    async def list_sessions(self, principal: Principal, user_id: int | None = None) -> list[SessionInfo]:
        """Your sessions (user_id None or yours), another user's (admin), current one marked."""
        target = principal.user_id if user_id is None else user_id
        self._ensure_self_or_admin(principal, target)
        return await self.db.read(lambda conn: queries.list_sessions(conn, target, principal.session_hash))

    async def list_all_sessions(self, principal: Principal) -> list[SessionInfo]:
        self._ensure_admin(principal)
        return await self.db.read(lambda conn: queries.list_sessions(conn, None, principal.session_hash))

    async def revoke_session(self, principal: Principal, handle: str, *, source: str) -> None:
        """End one session by its public handle: your own, or anyone's for an admin."""
        handle = handle[:64]
        owner = await self.db.read(lambda conn: queries.get_session_owner(conn, handle))
        if owner is None or (owner != principal.user_id and not allowed(principal.role, "users.manage")):
            raise NotFoundError("There is no such session.")
        now = self.clock.now()

        def job(conn):
            if queries.delete_session_by_handle(conn, handle):
                audit.record(conn, ts=now, action="auth.session.revoke", actor=_actor(principal, source),
                             target=f"user:{owner}", details={"count": 1, "reason": "revoked"})

        await self.db.write(job)

    async def revoke_other_sessions(self, principal: Principal, user_id: int | None = None, *, source: str) -> int:
        """End every session of a user except the caller's own; returns how many."""
        target = principal.user_id if user_id is None else user_id
        self._ensure_self_or_admin(principal, target)
        now = self.clock.now()
        return await self.db.write(lambda conn: self._revoke_all(
            conn, target, _actor(principal, source), now, "revoked", keep=principal.session_hash))

    # ---- local recovery (AUTH-5) ----------------------------------------------------------

    def reset_admin_sync(self, actor: Actor, username: str | None = None) -> tuple[str, str]:
        """`outpost reset-admin`: a temporary password for an admin (unlocked, enabled, 2FA
        cleared, sessions and API keys revoked), creating "admin" if no admin exists.
        `actor`: the CLI's (system, cli:<user>). Returns (username, password)."""
        now = self.clock.now()

        def pick(conn):
            if username:
                return queries.get_user_by_name(conn, username)
            admins = [u for u in queries.list_users(conn) if u.role == "admin"]
            return next((u for u in admins if not u.disabled), admins[0] if admins else None)

        user = self.db.read_sync(pick)
        name = user.username if user else (username or "admin")
        if policy.check_username(name):
            raise ValidationError("That is not a valid username.", details={"username": policy.check_username(name)})
        password = self._temporary_password(name)
        password_hash = self.hasher.hash_sync(password)

        def job(conn):
            found = queries.get_user_by_name(conn, name)
            if found is None:
                user_id = queries.insert_user(conn, username=name, role="admin", password_hash=password_hash,
                                              must_change_password=True, now=now)
                audit.record(conn, ts=now, action="user.create", actor=actor, target=f"user:{user_id}",
                             details={"username": name, "role": "admin"})
            else:
                user_id = found.id
                queries.update_password(conn, user_id, password_hash, must_change=True, now=now)
                queries.update_role(conn, user_id, "admin")
                queries.update_disabled(conn, user_id, False)
                queries.update_totp_seed(conn, user_id, None, 0)
                queries.replace_recovery_codes(conn, user_id, [])
                self._revoke_all(conn, user_id, actor, now, "reset-admin")
                self._password_replaced(conn, user_id, actor, now, "reset-admin")
            audit.record(conn, ts=now, action="user.admin.recover", actor=actor, target=f"user:{user_id}",
                         details={"username": name, "created": found is None})

        self.db.write_sync(job)
        return name, password
