"""API keys and the IP allow list (ACL-2, ACL-3).

Invariants (what must never happen):
- An API key's secret is never stored, logged, audited or shown twice: it is
  returned once at creation; the database keeps only HMAC-SHA-256(pepper, key)
  with the pepper in keys/apikey.key (0600), outside the database.
- A key never carries more rights than its creator had when creating it, nor more
  than its owner has now: requests get the lower of the key's role and the owner's
  current role; a disabled or deleted owner disables the key.
- Key validity is never cached: every request reads the key's row, so a revocation
  takes effect on the very next request.
- Secrets are compared in constant time; unknown ids cost the same HMAC as known ones.
- The allow list never locks out the admin who saves it (self-lockout guard), and an
  empty list allows every address. It is enforced before any authentication.
- Every create, revoke and allow-list change is audited in the same transaction.

This package sits at the auth level: it reads the users and roles tables with its
own SQL and does not import `auth` (the composition root passes in what it needs).
"""
