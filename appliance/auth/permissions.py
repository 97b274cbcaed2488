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
}


def allowed(role: str, permission: str) -> bool:
    """True if role holds permission; unknown roles and permissions are denied."""
    return role in PERMISSIONS.get(permission, frozenset())
