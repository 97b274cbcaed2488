"""AuthService: first-run setup, login (one or two steps), sessions and step-up.

See the package docstring for the invariants. Audit records are written in the
same `db.write` job as the state they describe, so neither exists without the other.
User administration lives in accounts.py, TOTP in mfa.py (mixed into AuthService,
so callers have one service: `services.auth`).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from appliance.audit import log as audit
from appliance.audit.models import Actor
from appliance.auth import policy, queries
from appliance.auth.accounts import AccountsMixin
from appliance.auth.errors import LOGIN_FAILED, AuthError, LoginFailedError, ReauthRequiredError, SessionEndedError, SetupError
from appliance.auth.mfa import MFAMixin
from appliance.auth.models import NewSession, Principal, SecondFactorRequired, SecurityPolicy
from appliance.auth.stepup import REAUTH_SECONDS, StepUpMixin
from appliance.auth.throttle import AccountFailures, Throttle
from appliance.clock import Clock
from appliance.config import AuthConfig
from appliance.crypto import tokens, totp
from appliance.crypto.passwords import PasswordHasher
from appliance.errors import RateLimitedError, ValidationError
from appliance.store.atomic import write_atomic

_LAST_SEEN_GRANULARITY = 30.0  # seconds; bounds session writes to one per half minute per session
PENDING_SECONDS = 5 * 60  # how long a password-checked sign-in waits for its TOTP code
PENDING_ATTEMPTS = 5  # wrong codes before the pending sign-in is dropped (start again with the password)

__all__ = ["AuthService", "AuthError", "LoginFailedError", "SetupError", "ReauthRequiredError", "LOGIN_FAILED",
           "REAUTH_SECONDS"]


class AuthService(AccountsMixin, MFAMixin, StepUpMixin):
    """Setup, sign-in, sessions; users (accounts.py), TOTP (mfa.py), step-up (stepup.py).

    `vault_key` seals TOTP seeds (STORE-3); None gives a per-process key (tests only:
    seeds then do not survive a restart). `hostname` is a context word for passwords."""

    def __init__(self, db, config: AuthConfig, clock: Clock, hasher: PasswordHasher, *,
                 vault_key: bytes | None = None, hostname: str = "") -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.hasher = hasher
        self.hostname = hostname
        self.vault_key = vault_key or _ephemeral_key()
        self.throttle = Throttle(limit=config.login_attempts_per_minute, window=60.0, clock=clock)
        self.failures = AccountFailures(clock=clock)
        # Called in the transaction that replaces a user's password by an admin reset or a
        # change: fn(conn, user_id, actor, now, reason) -> None. The composition root adds
        # API-key revocation (access/), which auth may not import.
        self.password_replaced_hooks: list = []
        self.policy: SecurityPolicy = self.db.read_sync(lambda conn: self._load_policy(conn))

    # ---- first-run setup (AUTH-1) -------------------------------------------------

    def ensure_setup_code(self, code_file: Path) -> str | None:
        """At start: return the valid setup code to print, issuing a new one if needed.

        None once an account exists (the file is removed then)."""
        now = self.clock.now()

        def job(conn):
            if queries.count_users(conn):
                return None
            state = queries.get_setup_state(conn)
            if state and state[2] is None and now - state[1] < self.config.setup_code_hours * 3600:
                try:
                    existing = code_file.read_text().strip()
                except OSError:
                    existing = ""
                if existing and tokens.equal(tokens.digest(existing), state[0]):
                    return existing
            code = tokens.new_setup_code()
            queries.upsert_setup_state(conn, tokens.digest(code), now)
            audit.record(conn, ts=now, action="setup.code.issue", actor=Actor.system(),
                         details={"valid_hours": self.config.setup_code_hours})
            write_atomic(code_file, (code + "\n").encode(), mode=0o600)
            return code

        code = self.db.write_sync(job)
        if code is None:
            code_file.unlink(missing_ok=True)
        return code

    async def setup_required(self) -> bool:
        return await self.db.read(lambda conn: queries.count_users(conn) == 0)

    async def complete_setup(self, *, code: str, username: str, password: str, confirm: str,
                             source: str, code_file: Path | None = None) -> None:
        """Create the first admin if the setup code is right, unused and unexpired."""
        self._throttle(source)
        errors: dict[str, str] = {}
        if problem := policy.check_username(username):
            errors["username"] = problem
        if problems := self.password_problems(password, username=username):
            errors["password"] = " ".join(problems)
        elif password != confirm:
            errors["confirm"] = "The two passwords differ."
        if errors:
            raise ValidationError("Please correct the highlighted fields.", details=errors)
        password_hash = await self.hasher.hash(password)
        now = self.clock.now()
        actor = Actor(type="anonymous", name=username[:64], source=source)

        def job(conn):
            reason = self._setup_refusal(conn, code, now)
            if reason is None:
                user_id = queries.insert_user(conn, username=username, role="admin", password_hash=password_hash,
                                              must_change_password=False, now=now)
                queries.update_setup_used(conn, now)
                audit.record(conn, ts=now, action="setup.complete", actor=actor, target=f"user:{user_id}",
                             details={"username": username, "role": "admin"})
            return reason

        reason = await self.db.write(job)
        if reason is not None:
            await self.db.write(lambda conn: audit.record(conn, ts=now, action="setup.failure", actor=actor,
                                                          outcome="failure", details={"reason": reason[0]}))
            raise SetupError(reason[1], details={"code": reason[1]} if reason[0] != "done" else {})
        if code_file is not None:
            code_file.unlink(missing_ok=True)

    def _setup_refusal(self, conn, code: str, now: float) -> tuple[str, str] | None:
        if queries.count_users(conn):
            return "done", "Setup has already been completed; sign in instead."
        state = queries.get_setup_state(conn)
        if state is None:
            return "no_code", "No setup code has been issued; restart the appliance to get one."
        code_hash, created_at, used_at = state
        if used_at is not None:
            return "used", "This setup code has already been used."
        if not tokens.equal(tokens.digest(tokens.normalise_setup_code(code)), code_hash):
            return "wrong_code", "Wrong setup code. Copy it from the console or the setup-code file."
        if now - created_at >= self.config.setup_code_hours * 3600:
            return "expired", "This setup code has expired; restart the appliance to get a new one."
        return None

    # ---- login and sessions (AUTH-2, AUTH-4, AUTH-6, AUTH-7) ----------------------------

    def _throttle(self, source: str) -> None:
        if not self.throttle.hit(source):
            raise RateLimitedError("Too many attempts from your address; wait a minute and try again.",
                                   retry_after=self.throttle.retry_after(source))

    async def _throttled(self, source: str, name: str, endpoint: str) -> None:
        try:
            self._throttle(source)
        except RateLimitedError:
            await self.db.write(lambda conn: audit.record(
                conn, ts=self.clock.now(), action="auth.throttle", actor=Actor(type="anonymous", name=name[:64], source=source),
                outcome="denied", details={"endpoint": endpoint}))
            raise

    def _failure_limit(self) -> int:
        """Failures one address may spend on one account per window: at most half the
        lockout threshold, so the per-address throttle always engages before the lockout."""
        return max(1, min(self.config.failures_per_address, self.policy.lockout_threshold // 2))

    async def _check_failure_budget(self, source: str, username: str, endpoint: str) -> None:
        """429 before any password check once this address used up its failures for this
        account (the same for unknown usernames: no enumeration)."""
        key, window = AccountFailures.key(source, username), self.policy.lockout_minutes * 60.0
        if not self.failures.exhausted(key, self._failure_limit(), window):
            return
        retry = self.failures.retry_after(key, window)
        await self.db.write(lambda conn: audit.record(
            conn, ts=self.clock.now(), action="auth.throttle", actor=Actor(type="anonymous", name=username[:64], source=source),
            outcome="denied", details={"endpoint": endpoint, "reason": "failures for this account from this address"}))
        raise RateLimitedError(f"Too many failed attempts for this account from your address; try again in "
                               f"{max(1, round(retry / 60))} minute(s).", retry_after=retry)

    def _note_attempt(self, source: str, username: str, ok: bool) -> None:
        key = AccountFailures.key(source, username)
        if ok:
            self.failures.clear(key)
        else:
            self.failures.fail(key)

    async def login(self, *, username: str, password: str, source: str, user_agent: str,
                    pre_session: str = "") -> NewSession | SecondFactorRequired:
        """Check a password. Without 2FA: a new session. With 2FA: SecondFactorRequired,
        and the caller continues with `login_second_factor` using the same pre-session token."""
        await self._throttled(source, username, "login")
        username = username[:256]
        await self._check_failure_budget(source, username, "login")
        creds = await self.db.read(lambda conn: queries.get_credentials(conn, username))
        # Always one argon2 verification, whoever asks: same time for every failure.
        matches, needs_rehash = await self.hasher.verify(creds.password_hash if creds else None,
                                                         password[:policy.MAX_PASSWORD], source=source)
        now = self.clock.now()
        actor = Actor(type="user" if creds else "anonymous", name=creds.user.username if creds else username[:64], source=source)
        user = creds.user if creds else None
        reason = ("unknown_user" if user is None else "disabled" if user.disabled
                  else "locked" if user.locked_until > now else None if matches else "wrong_password")
        if reason is not None:
            await self.db.write(lambda conn: self._record_failure(conn, user, actor, reason, now))
            self._note_attempt(source, username, False)
            raise LoginFailedError()
        self._note_attempt(source, username, True)
        new_hash = await self.hasher.hash(password) if needs_rehash else None
        if new_hash:
            await self.db.write(lambda conn: (queries.update_password_hash(conn, user.id, new_hash), audit.record(
                conn, ts=now, action="auth.password.rehash", actor=actor, target=f"user:{user.id}")))
        if user.totp_enabled:
            if not pre_session:
                raise LoginFailedError()
            expires = now + PENDING_SECONDS

            def pend(conn):
                queries.delete_expired_pending(conn, now)
                queries.upsert_pending_login(conn, tokens.digest(pre_session), user.id, now, expires)
                audit.record(conn, ts=now, action="auth.login.password_ok", actor=actor, target=f"user:{user.id}")

            await self.db.write(pend)
            return SecondFactorRequired(username=user.username, expires_at=expires)
        return await self._start_session(user, actor, user_agent, now, method="password")

    async def login_second_factor(self, *, pre_session: str, code: str, source: str, user_agent: str) -> NewSession:
        """Second sign-in step: a TOTP code or a recovery code for the pending sign-in.

        Raises LoginFailedError when there is no live pending sign-in (expired, too many
        attempts, or another browser), InvalidTOTPError/ReplayedTOTPError for a bad code."""
        await self._throttled(source, "", "login_totp")
        now = self.clock.now()
        pre_hash = tokens.digest(pre_session or "-")
        pending = await self.db.read(lambda conn: queries.get_pending_login(conn, pre_hash))
        if pending is None or pending[1] <= now or pending[2] >= PENDING_ATTEMPTS:
            if pending is not None:
                await self.db.write(lambda conn: queries.delete_pending_login(conn, pre_hash))
            raise LoginFailedError()
        user = await self.db.read(lambda conn: queries.get_user(conn, pending[0]))
        await self._check_failure_budget(source, user.username, "login_totp")
        actor = Actor(type="user", name=user.username, source=source)
        if user.disabled or user.locked_until > now:
            await self.db.write(lambda conn: (queries.delete_pending_login(conn, pre_hash),
                                              self._record_failure(conn, user, actor, "disabled" if user.disabled else "locked", now)))
            raise LoginFailedError()
        try:
            method = await self.check_second_factor(user.id, code, actor=actor)
        except totp.TOTPError as exc:
            def fail(conn):
                queries.update_pending_attempts(conn, pre_hash)
                self._record_failure(conn, user, actor, "totp_replayed" if isinstance(exc, totp.ReplayedTOTPError)
                                     else "wrong_totp", now)
            await self.db.write(fail)
            self._note_attempt(source, user.username, False)
            raise
        self._note_attempt(source, user.username, True)
        await self.db.write(lambda conn: queries.delete_pending_login(conn, pre_hash))
        return await self._start_session(user, actor, user_agent, now, method=method)

    async def _start_session(self, user, actor: Actor, user_agent: str, now: float, *, method: str,
                             replace: bytes = b"", proved: bool = True, action: str = "auth.login.success") -> NewSession:
        """Insert a new session and audit it. With `replace` (rotation) the old session is
        deleted in the same transaction and its absolute expiry carries over; so does its
        step-up time unless `proved` (the user has just entered their password)."""
        token, csrf, handle = tokens.new_token(32), tokens.new_token(32), tokens.new_token(16)
        id_hash = tokens.digest(token)

        def job(conn):
            expires, recent = now + self.config.session_absolute_hours * 3600, now
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
            audit.record(conn, ts=now, action=action, actor=actor, target=f"user:{user.id}",
                         details={"method": method})
            return recent

        recent_auth = await self.db.write(job)
        if recent_auth is None:
            raise SessionEndedError()
        fresh = await self.db.read(lambda conn: queries.get_user(conn, user.id))
        principal = Principal(user_id=user.id, username=user.username, role=fresh.role, session_hash=id_hash,
                              csrf_token=csrf, must_change_password=fresh.must_change_password,
                              created_at=now, last_seen=now, handle=handle, recent_auth=recent_auth,
                              totp_enabled=fresh.totp_enabled,
                              needs_totp_enrolment=self._needs_enrolment(fresh.role, fresh.totp_enabled))
        return NewSession(token=token, csrf_token=csrf, principal=principal)

    def _record_failure(self, conn, user, actor: Actor, reason: str, now: float) -> None:
        audit.record(conn, ts=now, action="auth.login.failure", actor=actor, outcome="failure",
                     target=f"user:{user.id}" if user else "", details={"reason": reason})
        if user is None or reason not in ("wrong_password", "wrong_totp", "totp_replayed"):
            return
        current = queries.get_user(conn, user.id)  # re-read: concurrent failures must all count
        failed = current.failed_logins + 1
        if failed >= self.policy.lockout_threshold:
            until = now + self.policy.lockout_minutes * 60
            queries.update_failed_logins(conn, user.id, 0, until)
            audit.record(conn, ts=now, action="auth.lockout", actor=actor, outcome="denied", target=f"user:{user.id}",
                         details={"failures": failed, "minutes": self.policy.lockout_minutes})
        else:
            queries.update_failed_logins(conn, user.id, failed, current.locked_until)

    def _needs_enrolment(self, role: str, totp_enabled: bool) -> bool:
        if totp_enabled:
            return False
        return self.policy.totp_policy == "all" or (self.policy.totp_policy == "admins" and role == "admin")

    async def resolve(self, token: str, source: str, *, background: bool = False) -> Principal | None:
        """The principal for a session cookie value, or None if unknown, expired or disabled.

        `background`: the request is an automatic refresh (a page polling for fresh figures),
        not the user doing something, so it does not count as activity: the idle timeout
        keeps running (last_seen is not moved)."""
        if not token or len(token) > 128:
            return None
        id_hash = tokens.digest(token)
        found = await self.db.read(lambda conn: queries.get_principal(conn, id_hash))
        if found is None:
            return None
        principal, expires_at, disabled = found
        now = self.clock.now()
        idle_limit = self.policy.session_idle_minutes * 60
        if disabled or now >= expires_at or now - principal.last_seen >= idle_limit:
            def expire(conn):
                if queries.delete_session(conn, id_hash):
                    audit.record(conn, ts=now, action="auth.session.expire",
                                 actor=Actor(type="user", name=principal.username, source=source),
                                 target=f"user:{principal.user_id}",
                                 details={"reason": "disabled" if disabled else "absolute" if now >= expires_at else "idle"})
            await self.db.write(expire)
            return None
        if not background and now - principal.last_seen >= _LAST_SEEN_GRANULARITY:
            await self.db.write(lambda conn: queries.update_last_seen(conn, id_hash, now))
        if self._needs_enrolment(principal.role, principal.totp_enabled):
            principal = msgspec.structs.replace(principal, needs_totp_enrolment=True)
        return principal

    async def logout(self, principal: Principal, source: str) -> None:
        now = self.clock.now()

        def job(conn):
            queries.delete_session(conn, principal.session_hash)
            audit.record(conn, ts=now, action="auth.logout", actor=Actor(type="user", name=principal.username, source=source),
                         target=f"user:{principal.user_id}")

        await self.db.write(job)

    async def purge_expired_sessions(self) -> int:
        now = self.clock.now()
        cutoff = now - self.policy.session_idle_minutes * 60
        return await self.db.write(lambda conn: queries.delete_expired_sessions(conn, now=now, idle_cutoff=cutoff)
                                   + queries.delete_expired_pending(conn, now))


def _ephemeral_key() -> bytes:
    import secrets

    return secrets.token_bytes(32)
