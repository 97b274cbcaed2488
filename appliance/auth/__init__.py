"""Accounts, first-run setup, logins, 2FA, server-side sessions, step-up and the
security policy (AUTH-1..8, ACL-1). `AuthService` (service.py) composes one service per
concern (setup, sessions, accounts, totp, stepup, policy) over a frozen `AuthContext`;
every method is HTTP-free and typed.

Invariants:
- No default credentials: the first admin is created only with the one-time
  setup code printed on the console (24 h, single use).
- Session ids are 256-bit random values; only their SHA-256 is stored. A new id
  is issued at every login and privilege change (own password or 2FA change);
  pages address sessions by a separate random handle, never by id.
- Unknown user, wrong password, locked and disabled accounts take the same code
  path, cost one argon2 verification each and get the same message.
- With 2FA on, no session exists until the second factor passed; a TOTP step
  or a recovery code is accepted at most once.
- A password change, 2FA change, role change, disable or admin reset revokes the
  user's other sessions server-side.
- Non-admins never see or change another user's account or sessions (404).
- The last active admin cannot be demoted or disabled.
- Every login, failure, lockout, logout, setup attempt, user change and policy
  change is audited in the same transaction as its state change, without secrets.
"""
