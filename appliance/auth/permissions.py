"""Roles and the permission table (ACL-1). Deny by default: a permission not listed
for a role is refused. docs: README "Roles and permissions" mirrors this table
(tests/auth/test_permissions.py keeps them in step)."""

from __future__ import annotations

ROLES = ("viewer", "auditor", "operator", "admin")

# permission -> roles that hold it
PERMISSIONS: dict[str, frozenset[str]] = {
    "dashboard.view": frozenset({"viewer", "auditor", "operator", "admin"}),
    "about.view": frozenset({"viewer", "auditor", "operator", "admin"}),
    "audit.read": frozenset({"auditor", "admin"}),
    "audit.export": frozenset({"auditor", "admin"}),
    "health.read": frozenset({"viewer", "operator", "admin"}),
    "users.manage": frozenset({"admin"}),
    "settings.security": frozenset({"admin"}),
    "settings.tls": frozenset({"admin"}),
    "backups.manage": frozenset({"admin"}),
    "updates.manage": frozenset({"admin"}),
    "devices.view": frozenset({"viewer", "auditor", "operator", "admin"}),
    "devices.manage": frozenset({"operator", "admin"}),
    "credentials.manage": frozenset({"operator", "admin"}),
    "devices.approve": frozenset({"admin"}),  # credential bindings (devices/binding.py)
    "apikeys.manage": frozenset({"viewer", "auditor", "operator", "admin"}),
    "apikeys.admin": frozenset({"admin"}),
    # Checked for API keys only (web/guards.writing_key): a viewer's or auditor's key reads and
    # nothing else, so it cannot mint or revoke keys or end sessions; in the browser every
    # role manages its own keys and sessions.
    "apikeys.write": frozenset({"operator", "admin"}),
    "settings.allowlist": frozenset({"admin"}),
    "audit.report": frozenset({"auditor", "admin"}),
    "metrics.read": frozenset({"viewer", "operator", "admin"}),  # health figures: the roles with health.read
    "probe.view": frozenset({"viewer", "operator", "admin"}),
    "probe.run": frozenset({"operator", "admin"}),
    "alerts.ack": frozenset({"operator", "admin"}),
}


def allowed(role: str, permission: str) -> bool:
    """True if role holds permission; unknown roles and permissions are denied."""
    return role in PERMISSIONS.get(permission, frozenset())


def covers(holder: str, role: str) -> bool:
    """True if `holder` holds every permission `role` holds (may grant it, e.g. to an API key).

    Roles are not a strict chain (an operator lacks the auditor's audit.read), so ranks
    alone cannot say whether a role may hand another one out."""
    return all(holder in roles for roles in PERMISSIONS.values() if role in roles)
