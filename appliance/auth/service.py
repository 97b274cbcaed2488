"""AuthService: first-run setup, login, logout and session resolution.

See the package docstring for the invariants. Audit records are written in the
same `db.write` job as the state they describe, so neither exists without the other.
"""

from __future__ import annotations

from pathlib import Path

from appliance.audit import log as audit
from appliance.audit.models import Actor
from appliance.auth import policy, queries
from appliance.auth.models import NewSession, Principal
from appliance.auth.throttle import Throttle
from appliance.clock import Clock
from appliance.config import AuthConfig
from appliance.crypto import tokens
from appliance.crypto.passwords import PasswordHasher
from appliance.errors import OutpostError, RateLimitedError, ValidationError
from appliance.store.atomic import write_atomic

LOGIN_FAILED = "Sign-in failed: wrong username or password, or the account is temporarily locked."
_LAST_SEEN_GRANULARITY = 30.0  # seconds; bounds session writes to one per half minute per session


class AuthError(OutpostError):
    code = "auth_error"


class LoginFailedError(AuthError):
    """Uniform for unknown user, wrong password, locked or disabled account."""

    code = "login_failed"
    status = 401

    def __init__(self) -> None:
        super().__init__(LOGIN_FAILED)


class SetupError(AuthError):
    """Setup refused; the message says why in plain words, details name the field."""

    code = "setup_refused"
    status = 400


class AuthService:
    def __init__(self, db, config: AuthConfig, clock: Clock, hasher: PasswordHasher) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.hasher = hasher
        self.throttle = Throttle(limit=config.login_attempts_per_minute, window=60.0, clock=clock)

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
        if problems := policy.check_password(password, username=username, min_length=self.config.password_min_length):
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

    # ---- login and sessions (AUTH-2, AUTH-4, AUTH-7) -----------------------------------

    def _throttle(self, source: str) -> None:
        if not self.throttle.hit(source):
            raise RateLimitedError("Too many attempts from your address; wait a minute and try again.",
                                   retry_after=self.throttle.retry_after(source))

    async def login(self, *, username: str, password: str, source: str, user_agent: str) -> NewSession:
        try:
            self._throttle(source)
        except RateLimitedError:
            await self.db.write(lambda conn: audit.record(
                conn, ts=self.clock.now(), action="auth.throttle", actor=Actor(type="anonymous", name=username[:64], source=source),
                outcome="denied", details={"endpoint": "login"}))
            raise
        username = username[:256]
        creds = await self.db.read(lambda conn: queries.get_credentials(conn, username))
        # Always one argon2 verification, whoever asks: same time for every failure.
        matches, needs_rehash = await self.hasher.verify(creds.password_hash if creds else None, password[:policy.MAX_PASSWORD])
        now = self.clock.now()
        actor = Actor(type="user" if creds else "anonymous", name=creds.user.username if creds else username[:64], source=source)
        user = creds.user if creds else None
        reason = ("unknown_user" if user is None else "disabled" if user.disabled
                  else "locked" if user.locked_until > now else None if matches else "wrong_password")
        if reason is not None:
            await self.db.write(lambda conn: self._record_failure(conn, user, actor, reason, now))
            raise LoginFailedError()
        new_hash = await self.hasher.hash(password) if needs_rehash else None
        token, csrf = tokens.new_token(32), tokens.new_token(32)
        id_hash = tokens.digest(token)
        expires = now + self.config.session_absolute_hours * 3600

        def job(conn):
            queries.update_failed_logins(conn, user.id, 0, 0)
            queries.insert_session(conn, id_hash=id_hash, user_id=user.id, csrf_token=csrf, now=now,
                                   expires_at=expires, source=source, user_agent=user_agent[:256])
            audit.record(conn, ts=now, action="auth.login.success", actor=actor, target=f"user:{user.id}")
            if new_hash:
                queries.update_password_hash(conn, user.id, new_hash)
                audit.record(conn, ts=now, action="auth.password.rehash", actor=actor, target=f"user:{user.id}")

        await self.db.write(job)
        principal = Principal(user_id=user.id, username=user.username, role=user.role, session_hash=id_hash,
                              csrf_token=csrf, must_change_password=user.must_change_password,
                              created_at=now, last_seen=now)
        return NewSession(token=token, csrf_token=csrf, principal=principal)

    def _record_failure(self, conn, user, actor: Actor, reason: str, now: float) -> None:
        audit.record(conn, ts=now, action="auth.login.failure", actor=actor, outcome="failure",
                     target=f"user:{user.id}" if user else "", details={"reason": reason})
        if user is None or reason != "wrong_password":
            return
        failed = user.failed_logins + 1
        if failed >= self.config.lockout_threshold:
            until = now + self.config.lockout_minutes * 60
            queries.update_failed_logins(conn, user.id, 0, until)
            audit.record(conn, ts=now, action="auth.lockout", actor=actor, outcome="denied", target=f"user:{user.id}",
                         details={"failures": failed, "minutes": self.config.lockout_minutes})
        else:
            queries.update_failed_logins(conn, user.id, failed, user.locked_until)

    async def resolve(self, token: str, source: str) -> Principal | None:
        """The principal for a session cookie value, or None if unknown, expired or disabled."""
        if not token or len(token) > 128:
            return None
        id_hash = tokens.digest(token)
        found = await self.db.read(lambda conn: queries.get_principal(conn, id_hash))
        if found is None:
            return None
        principal, expires_at, disabled = found
        now = self.clock.now()
        idle_limit = self.config.session_idle_minutes * 60
        if disabled or now >= expires_at or now - principal.last_seen >= idle_limit:
            def expire(conn):
                if queries.delete_session(conn, id_hash):
                    audit.record(conn, ts=now, action="auth.session.expire",
                                 actor=Actor(type="user", name=principal.username, source=source),
                                 target=f"user:{principal.user_id}",
                                 details={"reason": "disabled" if disabled else "absolute" if now >= expires_at else "idle"})
            await self.db.write(expire)
            return None
        if now - principal.last_seen >= _LAST_SEEN_GRANULARITY:
            await self.db.write(lambda conn: queries.update_last_seen(conn, id_hash, now))
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
        cutoff = now - self.config.session_idle_minutes * 60
        return await self.db.write(lambda conn: queries.delete_expired_sessions(conn, now=now, idle_cutoff=cutoff))
