"""ApiKeyService: create, list, revoke and authenticate API keys (ACL-2).

Key format: `op_<id>_<secret>`: id = 12 lowercase hex characters (public, shown in
lists), secret = 43 base64url characters (256 bits from the CSPRNG). Stored:
HMAC-SHA-256(pepper, whole key). See the package docstring for the invariants.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

from appliance.access import queries
from appliance.access.models import ApiKey, IssuedApiKey
from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.audit.service import AuditService
from appliance.clock import Clock
from appliance.config import AccessConfig
from appliance.errors import ConflictError, NotFoundError, OutpostError, PermissionDeniedError, ValidationError
from appliance.principal import Kind, Principal
from appliance.store.connection import Connection, Database

PREFIX = "op_"
ID_HEX = 12
SECRET_CHARS = 43  # base64url of 32 bytes, unpadded
KEY_LENGTH = len(PREFIX) + ID_HEX + 1 + SECRET_CHARS
_KEY_RE = re.compile(rf"op_([0-9a-f]{{{ID_HEX}}})_([A-Za-z0-9_-]{{{SECRET_CHARS}}})")
_ID_RE = re.compile(rf"[0-9a-f]{{{ID_HEX}}}")
LAST_USED_GRANULARITY = 30.0  # seconds: bounds last-used writes to one per key per half minute
_DUMMY_MAC = b"\x00" * 32
NAME_MAX = 64

_MESSAGES = {
    "missing": "This API needs an API key in the header 'Authorization: Bearer op_<id>_<secret>'.",
    "scheme": "Send the API key as 'Authorization: Bearer op_<id>_<secret>'; other schemes are not accepted.",
    "prefix": "This is not an Outpost API key: keys start with 'op_'.",
    "length": f"This API key has the wrong length: Outpost keys are {KEY_LENGTH} characters.",
    "format": "This API key is malformed: expected op_<12 hex characters>_<43 base64url characters>.",
    "unknown": "This API key is not valid: unknown key or wrong secret.",
    "revoked": "This API key has been revoked.",
    "expired": "This API key has expired; create a new one.",
    "disabled": "The account that owns this API key is disabled.",
    "owner_role": "The owner's current role no longer allows this key's role; create a new key.",
}


class ApiKeyError(OutpostError):
    code = "api_key_error"


class InvalidApiKeyError(ApiKeyError):
    """The presented key cannot be used; `reason` is one of _MESSAGES' keys (audited, not secret)."""

    code = "invalid_api_key"
    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(_MESSAGES[reason], details={"reason": reason})
        self.reason = reason


class KeyEscalationError(ApiKeyError, PermissionDeniedError):
    """The caller may not hand out this role; `reason` (audited) says which check refused it."""

    code = "role_not_allowed"
    status = 403

    def __init__(self, role: str, reason: str) -> None:
        super().__init__(f"Your role does not allow creating a key with the role {role}.",
                         details={"role": f"Your role does not allow the role {role}."})
        self.reason = reason


class _NotOwnerError(NotFoundError):
    """Another user's key, for a caller who may not revoke it: answered like a missing key
    (no existence oracle), audited as denied."""

    def __init__(self) -> None:
        super().__init__("No such API key.")


def parse_key(token: str) -> tuple[str, str]:
    """(id, secret) of a well-formed key; InvalidApiKeyError naming what is wrong otherwise."""
    if not token.startswith(PREFIX):
        raise InvalidApiKeyError("prefix")
    if len(token) != KEY_LENGTH:
        raise InvalidApiKeyError("length")
    match = _KEY_RE.fullmatch(token)
    if match is None:
        raise InvalidApiKeyError("format")
    return match[1], match[2]


def rank_grantable(creator_rank: int, role_rank: int) -> bool:
    return role_rank <= creator_rank


class ApiKeyService:
    def __init__(self, db: Database, config: AccessConfig, clock: Clock, pepper: bytes, *,
                 grantable: Callable[[str, str], bool]) -> None:
        """`grantable(holder_role, key_role)`: may a holder of one role hold a key of the other?
        The composition root passes a permission-subset check (auth/permissions.covers; roles
        are not a strict chain: an operator must not mint an auditor key); role ranks are
        checked as well. Required: there is no allow-everything default."""
        self.db = db
        self.config = config
        self.clock = clock
        self.audit = AuditService(db, clock)
        self._pepper = pepper
        self._grantable = grantable

    def _mac(self, plaintext: str) -> bytes:
        return hmac.new(self._pepper, plaintext.encode("ascii"), hashlib.sha256).digest()

    # ---- create ---------------------------------------------------------------------

    def _check_input(self, name: str, role: str, days: int | None, roles: list[str]) -> int:
        errors = {}
        if not name.strip():
            errors["name"] = "Give the key a name that says what uses it, e.g. 'backup script'."
        elif len(name) > NAME_MAX:
            errors["name"] = f"At most {NAME_MAX} characters."
        elif not name.isprintable():
            errors["name"] = "Use printable characters only."
        if role not in roles:
            errors["role"] = f"Choose one of: {', '.join(roles)}."
        days = self.config.api_key_default_days if days is None else days
        if not 1 <= days <= self.config.api_key_max_days:
            errors["expires_days"] = f"Choose between 1 and {self.config.api_key_max_days} days."
        if errors:
            raise ValidationError("Please correct the highlighted fields.", details=errors)
        return days

    async def create(self, *, owner_id: int, name: str, role: str, days: int | None, actor: Actor,
                     caller_role: str) -> IssuedApiKey:
        """A new key for owner_id (the creator). Both the owner's current role and `caller_role`
        (the role the request acts with: the session user's, or the calling API key's, which
        may be lower than its owner's) must cover `role`."""
        roles = await self.db.read(queries.list_roles)
        days = self._check_input(name, role, days, roles)
        name = name.strip()
        now = self.clock.now()
        key_id, secret = secrets.token_hex(ID_HEX // 2), secrets.token_urlsafe(32)
        plaintext = f"{PREFIX}{key_id}_{secret}"
        mac = self._mac(plaintext)

        def job(conn: Connection) -> ApiKey | None:
            owner = queries.get_owner(conn, owner_id)
            if owner is None or owner[2]:
                raise NotFoundError("Your account no longer exists or is disabled.")
            self._ensure_grantable(conn, owner[1], role)
            self._ensure_grantable(conn, caller_role, role)
            if queries.count_live_keys(conn, owner_id, now) >= self.config.api_keys_per_user:
                raise ConflictError(f"You already hold {self.config.api_keys_per_user} live API keys; "
                                    "revoke one first.",
                                    details={"limit": self.config.api_keys_per_user})
            queries.insert_key(conn, key_id=key_id, user_id=owner_id, name=name, role=role, secret_mac=mac, now=now,
                               expires_at=now + days * 86400)
            self.audit.record(conn, Event.APIKEY_CREATE, ts=now, actor=actor, target=f"apikey:{key_id}",
                              details={"name": name, "role": role, "days": days, "owner": owner[0]})
            return queries.get_key(conn, key_id)

        try:
            key = await self.db.write(job)
        except KeyEscalationError as refused:  # rolled back: nothing was created
            await self.audit.record_refusal(Event.APIKEY_CREATE, actor=actor, outcome="denied", ts=now,
                                            target=f"user:{owner_id}", details={"role": role, "reason": refused.reason})
            raise
        assert key is not None  # inserted in the same transaction
        return IssuedApiKey(key=key, plaintext=plaintext)

    def _ensure_grantable(self, conn: Connection, creator_role: str, role: str) -> None:
        """KeyEscalationError unless a holder of `creator_role` may hand out `role`."""
        creator_rank, role_rank = queries.get_role_rank(conn, creator_role), queries.get_role_rank(conn, role)
        if creator_rank is None or role_rank is None or not rank_grantable(creator_rank, role_rank):
            raise KeyEscalationError(role, "role ranks above the creator's")
        if not self._grantable(creator_role, role):
            raise KeyEscalationError(role, "role has permissions the creator lacks")

    # ---- list and revoke ------------------------------------------------------------

    async def list_keys(self, owner_id: int | None) -> list[ApiKey]:
        """Keys of one owner, or every key (None: admins)."""
        return await self.db.read(lambda conn: queries.list_keys(conn, owner_id))

    async def get(self, key_id: str, *, viewer_id: int, see_all: bool) -> ApiKey:
        """One key, if the viewer owns it or may see all; otherwise NotFound (no existence oracle)."""
        key = await self.db.read(lambda conn: queries.get_key(conn, key_id)) if _ID_RE.fullmatch(key_id) else None
        if key is None or (key.user_id != viewer_id and not see_all):
            raise NotFoundError("No such API key.")
        return key

    async def revoke(self, key_id: str, *, by_user_id: int, revoke_any: bool, actor: Actor) -> ApiKey:
        """Revoke now; the next request with the key fails. Other users' keys look absent."""
        now = self.clock.now()

        def job(conn: Connection) -> ApiKey | None:
            key = queries.get_key(conn, key_id) if _ID_RE.fullmatch(key_id) else None
            if key is None:
                raise NotFoundError("No such API key.")
            if key.user_id != by_user_id and not revoke_any:
                raise _NotOwnerError()
            if queries.update_revoked(conn, key_id, now):
                self.audit.record(conn, Event.APIKEY_REVOKE, ts=now, actor=actor, target=f"apikey:{key_id}",
                                  details={"name": key.name, "owner": key.username})
            return queries.get_key(conn, key_id)

        try:
            key = await self.db.write(job)
        except _NotOwnerError:
            await self.audit.record_refusal(Event.APIKEY_REVOKE, actor=actor, outcome="denied", ts=now,
                                            target=f"apikey:{key_id}", details={"reason": "not the owner"})
            raise
        if key is None:
            raise NotFoundError("No such API key.")
        return key

    def revoke_user_keys(self, conn: Connection, user_id: int, actor: Actor, now: float, reason: str) -> int:
        """Inside the caller's transaction: revoke every live key of a user, audited (one
        record naming the key ids). Wired by the composition root to password resets and
        changes: the keys were minted on the strength of the old password."""
        revoked = queries.update_revoked_for_user(conn, user_id, now)
        if revoked:
            self.audit.record(conn, Event.APIKEY_REVOKE, ts=now, actor=actor, target=f"user:{user_id}",
                              details={"count": len(revoked), "keys": revoked[:50], "reason": reason})
        return len(revoked)

    # ---- authentication ---------------------------------------------------------------

    async def authenticate(self, token: str, source: str) -> Principal:
        """The principal for a presented key; InvalidApiKeyError (with a reason) otherwise.

        Never cached: the row is read on every call, so revocation is immediate."""
        key_id, _ = parse_key(token)
        found = await self.db.read(lambda conn: queries.get_verifier(conn, key_id))
        # Same HMAC and comparison whether or not the id exists.
        matches = hmac.compare_digest(self._mac(token), found.secret_mac if found else _DUMMY_MAC)
        if found is None or not matches:
            raise InvalidApiKeyError("unknown")
        now = self.clock.now()
        if found.revoked_at is not None:
            raise InvalidApiKeyError("revoked")
        if now >= found.expires_at:
            raise InvalidApiKeyError("expired")
        if found.owner_disabled:
            raise InvalidApiKeyError("disabled")
        if found.key_role != found.owner_role and (
                found.key_rank > found.owner_rank or not self._grantable(found.owner_role, found.key_role)):
            raise InvalidApiKeyError("owner_role")
        if found.last_used_at is None or now - found.last_used_at >= LAST_USED_GRANULARITY:
            await self.db.write(lambda conn: queries.update_last_used(conn, key_id, now, source[:64]))
        # recent_auth 0: a bearer key is never a step-up by itself (principal.py).
        return Principal(user_id=found.user_id, username=found.username, role=found.key_role, kind=Kind.API_KEY,
                         key_id=key_id, recent_auth=0.0, created_at=now, last_seen=now)

    async def record_failure(self, reason: str, source: str, key_id: str = "") -> None:
        """Audit a refused key (the reason and public id only, never the presented secret)."""
        anonymous = Actor(type="anonymous", name="", source=source)
        await self.audit.record_refusal(Event.APIKEY_AUTH_FAILURE, actor=anonymous, outcome="failure",
                                        target=f"apikey:{key_id}" if key_id else "", details={"reason": reason})
