"""AuthService: the auth capability's services, composed over one frozen AuthContext.

Callers reach each service by name (`services.auth.sessions.login(...)`):

    setup     setup.py           first-run setup code and first admin (AUTH-1)
    sessions  sessions.py        sign-in, second step, sessions, rotation (AUTH-2, -4, -6, -7)
    accounts  accounts.py        user administration, own password, reset-admin (AUTH-3, -5, ACL-1)
    totp      mfa.py             your own TOTP enrolment and recovery codes (AUTH-6)
    stepup    stepup.py          re-authentication for sensitive actions (AUTH-8)
    policy    securitypolicy.py  the run-time security policy (AUTH-3, -4, -6, -7)

Shared by several of them: attempts.py (throttle, failure budget, lockout) and
secondfactor.py (checking TOTP and recovery codes). No service reaches into another's
state; each gets the collaborators it uses as constructor arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.audit.service import AuditService
from appliance.auth.accounts import AccountService, PasswordReplaced
from appliance.auth.attempts import Attempts
from appliance.auth.context import AuthContext
from appliance.auth.mfa import TOTPService
from appliance.auth.secondfactor import SecondFactor
from appliance.auth.securitypolicy import PolicyService
from appliance.auth.sessions import SessionService
from appliance.auth.setup import SetupService
from appliance.auth.stepup import StepUpService
from appliance.crypto import vault

if TYPE_CHECKING:
    from appliance.clock import Clock
    from appliance.config import AuthConfig
    from appliance.crypto.passwords import PasswordHasher
    from appliance.store.connection import Database


class AuthService:
    """The composed auth services (see the module docstring).

    `vault_key` seals TOTP seeds (STORE-3): the data directory's keys/vault.key, so seeds
    survive a restart. `hostname` is a context word passwords may not contain.
    `password_replaced(conn, user_id, actor, now, reason)` runs in the transaction that
    replaces a user's password (reset, change, reset-admin): the composition root passes
    API-key revocation (access/), which auth may not import."""

    def __init__(self, db: Database, config: AuthConfig, clock: Clock, hasher: PasswordHasher, *,
                 vault_key: bytes, hostname: str, password_replaced: PasswordReplaced) -> None:
        if len(vault_key) != vault.KEY_BYTES:
            raise ValueError(f"the vault key must be {vault.KEY_BYTES} bytes (keys/vault.key)")
        audit = AuditService(db, clock)
        self.policy = PolicyService(db, config, clock, audit, hostname=hostname)
        self.context = AuthContext(db=db, clock=clock, config=config, policy=self.policy, vault_key=vault_key,
                                   hasher=hasher, audit=audit)
        attempts = Attempts(self.context)
        second_factor = SecondFactor(self.context)
        self.setup = SetupService(self.context, attempts)
        self.sessions = SessionService(self.context, attempts, second_factor)
        self.stepup = StepUpService(self.context, attempts, second_factor)
        self.totp = TOTPService(self.context, attempts, self.sessions, second_factor)
        self.accounts = AccountService(self.context, attempts, self.sessions, password_replaced=password_replaced)
