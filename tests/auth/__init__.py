"""Helpers for in-process auth tests."""

from appliance.auth.service import AuthService

TEST_VAULT_KEY = bytes(range(32))  # a fixed key: in production it is the data directory's keys/vault.key


def build_auth(db, config, clock, hasher, *, hostname: str = "") -> AuthService:
    """An AuthService on `db` without API keys (nothing to revoke when a password is replaced)."""
    return AuthService(db, config, clock, hasher, vault_key=TEST_VAULT_KEY, hostname=hostname,
                       password_replaced=lambda conn, user_id, actor, now, reason: 0)
