"""The tamper-evident audit log (AUDIT-1..4).

Invariants:
- Every record is written by `log.record()` inside the same write transaction as
  the change it describes; if it cannot be written the change is rolled back
  (fail closed). `audit` imports no other capability: it is a sink.
- Records are hash-chained: hash = SHA-256(prev_hash || canonical content). A
  retention purge leaves a checkpoint holding the hash the first kept row chains from.
- Details are non-secret by contract: callers never pass passwords, keys, tokens,
  TOTP secrets or credentials; `log.record()` refuses detail keys that look secret.
"""
