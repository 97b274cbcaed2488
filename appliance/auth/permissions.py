"""Roles and the permission table (ACL-1). Deny by default: a permission not listed
for a role is refused. docs: README "Roles and permissions" mirrors this table
(tests/auth/test_permissions.py keeps them in step)."""

from __future__ import annotations

from enum import StrEnum

from appliance.errors import PermissionDeniedError


class Role(StrEnum):
    """The roles, lowest rank first. The `roles` table (store/migrations/0001_initial.sql) holds
    the same names in the same rank order; tests/auth/test_permissions.py checks the two agree."""

    VIEWER = "viewer"
    AUDITOR = "auditor"
    OPERATOR = "operator"
    ADMIN = "admin"


ROLES: tuple[Role, ...] = tuple(Role)  # for forms and messages, in rank order

# permission -> roles that hold it
PERMISSIONS: dict[str, frozenset[Role]] = {
    "dashboard.view": frozenset(Role),
    "about.view": frozenset(Role),
    "audit.read": frozenset({Role.AUDITOR, Role.ADMIN}),
    "audit.export": frozenset({Role.AUDITOR, Role.ADMIN}),
    "health.read": frozenset({Role.VIEWER, Role.OPERATOR, Role.ADMIN}),
    "users.manage": frozenset({Role.ADMIN}),
    "settings.security": frozenset({Role.ADMIN}),
    "settings.tls": frozenset({Role.ADMIN}),
    "backups.manage": frozenset({Role.ADMIN}),
    "updates.manage": frozenset({Role.ADMIN}),
    "devices.view": frozenset(Role),
    "devices.manage": frozenset({Role.OPERATOR, Role.ADMIN}),
    "credentials.manage": frozenset({Role.OPERATOR, Role.ADMIN}),
    "devices.approve": frozenset({Role.ADMIN}),  # credential bindings (devices/binding.py)
    "apikeys.manage": frozenset(Role),
    "apikeys.admin": frozenset({Role.ADMIN}),
    # Checked for API keys only (web/guards.writing_key): a viewer's or auditor's key reads and
    # nothing else, so it cannot mint or revoke keys or end sessions; in the browser every
    # role manages its own keys and sessions.
    "apikeys.write": frozenset({Role.OPERATOR, Role.ADMIN}),
    "settings.allowlist": frozenset({Role.ADMIN}),
    "audit.report": frozenset({Role.AUDITOR, Role.ADMIN}),
    "metrics.read": frozenset({Role.VIEWER, Role.OPERATOR, Role.ADMIN}),  # health figures: the roles with health.read
    "probe.view": frozenset({Role.VIEWER, Role.OPERATOR, Role.ADMIN}),
    "probe.run": frozenset({Role.OPERATOR, Role.ADMIN}),
    "alerts.ack": frozenset({Role.OPERATOR, Role.ADMIN}),
}


def allowed(role: str, permission: str) -> bool:
    """True if role holds permission; unknown roles and permissions are denied."""
    return role in PERMISSIONS.get(permission, frozenset())


def ensure_allowed(role: str, permission: str) -> None:
    """Raise PermissionDeniedError (403, naming the permission) unless role holds permission."""
    if not allowed(role, permission):
        raise PermissionDeniedError("Your role does not allow this.", details={"permission": permission})


def covers(holder: str, role: str) -> bool:
    """True if `holder` holds every permission `role` holds (may grant it, e.g. to an API key).

    Roles are not a strict chain (an operator lacks the auditor's audit.read), so ranks
    alone cannot say whether a role may hand another one out."""
    return all(holder in roles for roles in PERMISSIONS.values() if role in roles)
