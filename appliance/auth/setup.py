"""First-run setup (AUTH-1): the one-time setup code and the first admin. HTTP-free.

Invariants (what must never happen):
- Default credentials exist: the first admin is created only with the setup code printed
  on the console and written to a 0600 file (24 h by default, single use).
- The code is stored: only its SHA-256 is, compared in constant time.
- A refused attempt (wrong, used, expired or missing code; setup already done) changes
  anything: the check and the creation run in one transaction, which the refusal rolls
  back (SetupError raised inside it); the refusal is then audited on its own (setup.failure).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.auth import policy, queries
from appliance.auth.errors import SetupError
from appliance.crypto import tokens
from appliance.errors import ValidationError
from appliance.store.atomic import write_atomic

if TYPE_CHECKING:
    from appliance.auth.attempts import Attempts
    from appliance.auth.context import AuthContext
    from appliance.store.connection import Connection


class SetupService:
    def __init__(self, ctx: AuthContext, attempts: Attempts) -> None:
        self._ctx = ctx
        self._attempts = attempts

    def ensure_setup_code(self, code_file: Path) -> str | None:
        """At start: return the valid setup code to print, issuing a new one if needed.

        None once an account exists (the file is removed then)."""
        now = self._ctx.clock.now()
        code = self._ctx.db.write_sync(lambda conn: self._current_or_new_code(conn, code_file, now))
        if code is None:
            code_file.unlink(missing_ok=True)
        return code

    def _current_or_new_code(self, conn: Connection, code_file: Path, now: float) -> str | None:
        hours = self._ctx.config.setup_code_hours
        if queries.count_users(conn):
            return None
        state = queries.get_setup_state(conn)
        if state and state[2] is None and now - state[1] < hours * 3600:
            try:
                existing = code_file.read_text().strip()
            except OSError:
                existing = ""
            if existing and tokens.equal(tokens.digest(existing), state[0]):
                return existing
        code = tokens.new_setup_code()
        queries.upsert_setup_state(conn, tokens.digest(code), now)
        self._ctx.audit.record(conn, Event.SETUP_CODE_ISSUE, ts=now, actor=Actor.system(),
                               details={"valid_hours": hours})
        write_atomic(code_file, (code + "\n").encode(), mode=0o600)
        return code

    async def setup_required(self) -> bool:
        return await self._ctx.db.read(lambda conn: queries.count_users(conn) == 0)

    async def complete_setup(self, *, code: str, username: str, password: str, confirm: str,
                             source: str, code_file: Path | None = None) -> None:
        """Create the first admin if the setup code is right, unused and unexpired."""
        ctx = self._ctx
        self._attempts.check_rate(source)
        errors: dict[str, str] = {}
        if problem := policy.check_username(username):
            errors["username"] = problem
        if problems := ctx.policy.password_problems(password, username=username):
            errors["password"] = " ".join(problems)
        elif password != confirm:
            errors["confirm"] = "The two passwords differ."
        if errors:
            raise ValidationError("Please correct the highlighted fields.", details=errors)
        password_hash = await ctx.hasher.hash(password)
        now = ctx.clock.now()
        actor = Actor(type="anonymous", name=username[:64], source=source)

        def job(conn: Connection) -> None:
            self._ensure_code_accepted(conn, code, now)
            user_id = queries.insert_user(conn, username=username, role="admin", password_hash=password_hash,
                                          must_change_password=False, now=now)
            queries.update_setup_used(conn, now)
            ctx.audit.record(conn, Event.SETUP_COMPLETE, ts=now, actor=actor, target=f"user:{user_id}",
                             details={"username": username, "role": "admin"})

        try:
            await ctx.db.write(job)
        except SetupError as refused:
            await ctx.audit.record_refusal(Event.SETUP_FAILURE, ts=now, actor=actor, outcome="failure",
                                           details={"reason": refused.reason})
            raise
        if code_file is not None:
            code_file.unlink(missing_ok=True)

    def _ensure_code_accepted(self, conn: Connection, code: str, now: float) -> None:
        """SetupError (with the reason audited) unless `code` may create the first admin now."""
        if queries.count_users(conn):
            raise SetupError("done", "Setup has already been completed; sign in instead.")
        state = queries.get_setup_state(conn)
        if state is None:
            raise SetupError("no_code", "No setup code has been issued; restart the appliance to get one.")
        code_hash, created_at, used_at = state
        if used_at is not None:
            raise SetupError("used", "This setup code has already been used.")
        if not tokens.equal(tokens.digest(tokens.normalise_setup_code(code)), code_hash):
            raise SetupError("wrong_code", "Wrong setup code. Copy it from the console or the setup-code file.")
        if now - created_at >= self._ctx.config.setup_code_hours * 3600:
            raise SetupError("expired", "This setup code has expired; restart the appliance to get a new one.")
