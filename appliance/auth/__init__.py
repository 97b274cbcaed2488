"""Accounts, first-run setup, logins and server-side sessions (AUTH-1, 2, 4, 7).

Invariants:
- No default credentials: the first admin is created only with the one-time
  setup code printed on the console (24 h, single use).
- Session ids are 256-bit random values; only their SHA-256 is stored. A new id
  is issued at every login; logout deletes the row server-side.
- Unknown user, wrong password, locked and disabled accounts take the same code
  path, cost one argon2 verification each and get the same message.
- Every login, failure, lockout, logout and setup attempt is audited in the same
  transaction as its state change.
"""
