"""The run-time security policy (AUTH-3, -4, -6, -7): password rules, 2FA policy, session
idle time and lockout, editable by admins. Stored in the `settings` table; `[auth]` in the
config file gives the defaults. HTTP-free.

Invariants (what must never happen):
- A policy value outside its documented bounds takes effect: stored values are validated
  when loaded (an unreadable or invalid stored policy falls back to the config defaults)
  and when saved.
- The policy changes without an admin's step-up (a re-authentication in the last 5
  minutes), or without an audit record naming every changed field with old and new values.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, get_args

import msgspec

from appliance.audit.events import Event
from appliance.auth import policy, queries
from appliance.auth.models import SecurityPolicy
from appliance.auth.permissions import ensure_allowed
from appliance.auth.stepup import require_recent_auth
from appliance.config import AuthConfig, TotpPolicy
from appliance.errors import ValidationError
from appliance.principal import Principal

if TYPE_CHECKING:
    from appliance.audit.service import AuditService
    from appliance.clock import Clock
    from appliance.store.connection import Connection, Database

POLICY_KEY = "auth.security_policy"


def _int_bounds() -> dict[str, tuple[int, int]]:
    """field -> (min, max) of every whole-number policy field, read from [auth]'s type for it (config.py)."""
    info = msgspec.inspect.type_info(AuthConfig)
    assert isinstance(info, msgspec.inspect.StructType)
    types = {field.name: getattr(field.type, "type", field.type) for field in info.fields}  # unwrap the Meta
    bounds = {}
    for name in SecurityPolicy.__struct_fields__:  # the policy's order (form and error order)
        kind = types[name]
        if isinstance(kind, msgspec.inspect.IntType) and kind.ge is not None and kind.le is not None:
            bounds[name] = (kind.ge, kind.le)
    return bounds


POLICY_LIMITS = _int_bounds()
TOTP_POLICIES: tuple[str, ...] = get_args(get_args(TotpPolicy)[0])  # ("all", "admins", "optional")


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
        errors["totp_policy"] = "Choose one of: " + ", ".join(TOTP_POLICIES) + "."
    else:
        clean["totp_policy"] = values["totp_policy"]
    composition = values.get("require_composition", False)
    if composition not in (True, False, "on", "true", "false", ""):
        errors["require_composition"] = "Choose on or off."
    clean["require_composition"] = composition in (True, "on", "true")
    if errors:
        raise ValidationError("Please correct the highlighted fields.", details=errors)
    return SecurityPolicy(**clean)


class PolicyService:
    """The current policy (`current`), the rules derived from it, and admin changes to it."""

    def __init__(self, db: Database, config: AuthConfig, clock: Clock, audit: AuditService, *, hostname: str) -> None:
        self._db = db
        self._config = config
        self._clock = clock
        self._audit = audit
        self._hostname = hostname  # a context word passwords may not contain
        self.current: SecurityPolicy = db.read_sync(self._load)

    def _defaults(self) -> dict:
        return {name: getattr(self._config, name) for name in SecurityPolicy.__struct_fields__}

    def _load(self, conn: Connection) -> SecurityPolicy:
        values = self._defaults()
        raw = queries.get_setting(conn, POLICY_KEY)
        if raw:
            # An unreadable stored value: config defaults apply until an admin saves again.
            with contextlib.suppress(msgspec.DecodeError):
                values.update(msgspec.json.decode(raw))
        try:
            return validate_policy(values)
        except ValidationError:
            return validate_policy(self._defaults())

    async def update(self, principal: Principal, new: SecurityPolicy | dict, *, source: str) -> SecurityPolicy:
        """Save the security policy (admin, step-up); audited with old and new values."""
        ensure_allowed(principal.role, "users.manage")
        require_recent_auth(self._clock, principal)
        new = validate_policy(msgspec.structs.asdict(new) if isinstance(new, SecurityPolicy) else new)
        old = self.current
        changes = {k: [getattr(old, k), getattr(new, k)] for k in SecurityPolicy.__struct_fields__
                   if getattr(old, k) != getattr(new, k)}
        now = self._clock.now()

        def job(conn: Connection) -> None:
            queries.upsert_setting(conn, POLICY_KEY, msgspec.json.encode(new).decode())
            self._audit.record(conn, Event.POLICY_SECURITY_UPDATE, ts=now, actor=principal.actor(source),
                               target="settings:security", details={"changes": changes})

        await self._db.write(job)
        self.current = new
        return new

    def password_problems(self, password: str, *, username: str) -> list[str]:
        """Policy rules the password breaks (not reuse, which needs the stored hashes)."""
        return policy.check_password(password, username=username, min_length=self.current.password_min_length,
                                     require_composition=self.current.require_composition, hostname=self._hostname)

    def totp_required(self, role: str) -> bool:
        """Whether the 2FA policy requires TOTP of a user with this role."""
        return self.current.totp_policy == "all" or (self.current.totp_policy == "admins" and role == "admin")

    def needs_enrolment(self, role: str, totp_enabled: bool) -> bool:
        return not totp_enabled and self.totp_required(role)

    def failure_limit(self, failures_per_address: int) -> int:
        """Failures one address may spend on one account per window: at most half the
        lockout threshold, so the per-address throttle always engages before the lockout."""
        return max(1, min(failures_per_address, self.current.lockout_threshold // 2))
