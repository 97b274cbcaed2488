"""Signed USB updates (UPD-1..3): bundle format, verification, A/B slots, apply and rollback.

Invariants (what must never happen):
- Anything from a bundle is used before the whole staged copy verified: signature chain
  up to a root built into the binary, product, anti-rollback and floor, every payload
  hash and size, and the exact file length.
- The source medium is read more than once or used after copying: staging copies it
  once (size checked by stat first, hard cap while copying) and everything after works
  on the copy.
- A crash at any step leaves `current` pointing at a slot that is not a complete,
  verified install (slot directories are finished and fsynced before the atomic
  symlink rename that selects them).
"""
