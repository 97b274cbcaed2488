"""What every auth service shares: one small frozen record, built once by AuthService.

Frozen, so no service can swap the database, clock, hasher or vault key another one
relies on. The security policy is the one value that changes at run time (admins edit
it); it is owned and replaced by `policy` (auth/securitypolicy.py), never copied here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.audit.service import AuditService
    from appliance.auth.securitypolicy import PolicyService
    from appliance.clock import Clock
    from appliance.config import AuthConfig
    from appliance.crypto.passwords import PasswordHasher
    from appliance.store.connection import Database


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthContext:
    db: Database
    clock: Clock
    config: AuthConfig
    policy: PolicyService
    vault_key: bytes
    """Seals TOTP seeds (STORE-3); the data directory's keys/vault.key, so seeds survive restarts."""
    hasher: PasswordHasher
    audit: AuditService
