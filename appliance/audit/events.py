"""The audit event catalogue: stable codes, severities and human labels.

A code never changes meaning once shipped; new events get new codes. Actions are
named "<capability>.<subject>.<action>". tests/audit/test_events.py checks that
codes are unique and that every action used in the code base is listed here.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Severity = Literal["info", "notice", "warning", "alert"]


class Event(NamedTuple):
    code: str
    action: str
    severity: Severity
    label: str


CATALOGUE: tuple[Event, ...] = (
    Event("SYS001", "system.start", "info", "Appliance started"),
    Event("SYS002", "system.stop", "info", "Appliance stopped"),
    Event("STO001", "store.migrate", "notice", "Database schema migrated"),
    Event("SET001", "setup.complete", "notice", "First-run setup completed, first admin created"),
    Event("SET002", "setup.failure", "warning", "First-run setup attempt refused"),
    Event("SET003", "setup.code.issue", "notice", "One-time setup code issued"),
    Event("AUT001", "auth.login.success", "info", "Login succeeded"),
    Event("AUT002", "auth.login.failure", "warning", "Login failed"),
    Event("AUT003", "auth.logout", "info", "Logged out"),
    Event("AUT004", "auth.lockout", "alert", "Account locked after repeated failed logins"),
    Event("AUT005", "auth.throttle", "warning", "Source address throttled"),
    Event("AUT006", "auth.session.expire", "info", "Session expired"),
    Event("AUT007", "auth.password.rehash", "info", "Password hash upgraded to current parameters"),
    Event("AUT008", "auth.login.password_ok", "info", "Password accepted; waiting for the second factor"),
    Event("AUT009", "auth.session.revoke", "notice", "Sessions revoked (by the user, an admin, or a password/2FA/role change)"),
    Event("AUT010", "auth.session.rotate", "info", "Session id replaced after a privilege change"),
    Event("AUT011", "auth.reauth", "info", "Re-authentication for a sensitive action (step-up)"),
    Event("USR001", "user.create", "notice", "User created with a temporary password"),
    Event("USR002", "user.role.change", "alert", "User role changed"),
    Event("USR003", "user.disable", "notice", "User disabled"),
    Event("USR004", "user.enable", "notice", "User enabled"),
    Event("USR005", "user.unlock", "notice", "Locked account unlocked by an admin"),
    Event("USR006", "user.password.reset", "alert", "Password reset by an admin (temporary password issued)"),
    Event("USR007", "user.password.change", "notice", "Own password changed (or refused: wrong current password)"),
    Event("USR008", "user.admin.recover", "alert", "Admin recovered with `outpost reset-admin` on the local console"),
    Event("MFA001", "mfa.totp.enrol.start", "info", "Two-factor set-up started (seed issued, not yet active)"),
    Event("MFA002", "mfa.totp.enable", "notice", "Two-factor sign-in turned on or replaced (or refused: wrong code)"),
    Event("MFA003", "mfa.totp.disable", "alert", "Two-factor sign-in turned off by its user"),
    Event("MFA004", "mfa.totp.reset", "alert", "Two-factor sign-in removed by an admin"),
    Event("MFA005", "mfa.recovery.use", "warning", "Recovery code used to sign in"),
    Event("MFA006", "mfa.recovery.regenerate", "notice", "Recovery codes replaced"),
    Event("POL001", "policy.security.update", "alert", "Security policy changed (old and new values recorded)"),
    Event("ACC001", "access.denied", "warning", "Request refused by access control"),
    Event("ACC002", "access.csrf.denied", "alert", "Cross-site or token-less state change refused"),
    Event("AUD001", "audit.export", "notice", "Audit log exported"),
    Event("AUD002", "audit.verify", "info", "Audit chain verified"),
    Event("AUD003", "audit.purge", "notice", "Audit records past retention purged"),
    Event("TLS001", "tls.ca.generate", "notice", "Local certificate authority generated"),
    Event("TLS002", "tls.cert.generate", "notice", "Server certificate generated"),
    Event("TLS003", "tls.cert.renew", "notice", "Server certificate renewed"),
    Event("UPD001", "update.verify", "notice", "Update bundle staged and verified (failure: refused, with the reason)"),
    Event("UPD002", "update.install", "notice", "Update installed into the inactive slot"),
    Event("UPD003", "update.snapshot", "info", "Database snapshot taken before an update"),
    Event("UPD004", "update.switch", "warning", "Active slot switched to a new version"),
    Event("UPD005", "update.health", "notice", "Health gate of a new version (failure: it did not come up)"),
    Event("UPD006", "update.rollback", "warning", "Rollback to the previous slot requested"),
    Event("UPD007", "update.rollback.done", "warning", "Rolled back to the previous slot, database snapshot restored"),
    Event("INT001", "integrity.check", "info", "Integrity self-check run"),
    Event("INT002", "integrity.mismatch", "alert", "Integrity self-check failed: installed files differ from the signed manifest"),
    Event("CRT001", "tls.cert.import", "notice", "Customer certificate imported and now served"),
    Event("CRT002", "tls.cert.import.refused", "warning", "Customer certificate import refused"),
    Event("CRT003", "tls.cert.rollback", "notice", "Certificate rolled back to the previous one"),
    Event("CRT004", "tls.cert.regenerate", "notice", "Generated local certificate served again (regenerated)"),
    Event("BAK001", "backup.create", "notice", "Encrypted backup written"),
    Event("BAK002", "backup.failure", "warning", "Backup failed"),
    Event("BAK003", "backup.restore", "alert", "Backup restored into the data directory"),
    Event("BAK004", "backup.download", "notice", "Backup file downloaded"),
    Event("RKY001", "store.rekey", "alert", "Database key rotated"),
    Event("KEY001", "apikey.create", "notice", "API key created (or refused: role too high)"),
    Event("KEY002", "apikey.revoke", "notice", "API key revoked (or refused: not the owner)"),
    Event("KEY003", "apikey.auth.failure", "warning", "API request with an invalid, revoked or expired key refused"),
    Event("ACL001", "access.allowlist.update", "alert", "IP allow list changed"),
    Event("ACL002", "access.allowlist.reset", "alert", "IP allow list cleared from the local command line"),
    Event("API001", "api.write", "info", "State-changing API request made with an API key"),
    Event("RPT001", "audit.report.export", "notice", "Login report exported"),
    Event("DEV001", "device.create", "notice", "Device added to the inventory"),
    Event("DEV002", "device.update", "notice", "Device changed"),
    Event("DEV003", "device.delete", "notice", "Device deleted"),
    Event("DEV004", "device.import", "notice", "Devices imported from CSV (all rows, or none and refused)"),
    Event("DEV005", "device.binding.request", "warning", "Device uses a stored credential at a new address, port or host key: nothing secret is sent until an admin approves"),
    Event("DEV006", "device.binding.approve", "notice", "Admin approved a device's credential binding (address, port and credential)"),
    Event("CRD001", "credential.create", "notice", "SSH credential created (no secret recorded)"),
    Event("CRD002", "credential.update", "notice", "SSH credential changed or its secret replaced (no secret recorded)"),
    Event("CRD003", "credential.delete", "notice", "SSH credential deleted"),
    Event("HKY001", "device.hostkey.pin", "notice", "Host key pinned on first contact (trust on first use)"),
    Event("HKY002", "device.hostkey.preset", "notice", "Host key pinned from an operator-preset key or fingerprint"),
    Event("HKY003", "device.hostkey.mismatch", "alert", "Device presented a host key that does not match its pin"),
    Event("HKY004", "device.hostkey.repin", "alert", "Operator reviewed and trusted a new host key"),
    Event("HKY005", "device.hostkey.forget", "warning", "Operator removed a host-key pin"),
    Event("PRB001", "probe.status.change", "notice", "Device status changed (up, degraded, down, auth failed, host key changed, unreachable)"),
    Event("PRB002", "probe.connectivity.test", "info", "On-demand connectivity test run against a device"),
    Event("PRB003", "probe.command.run", "notice", "On-demand command finished on a device (full command line and exit status, never output)"),
    Event("PRB004", "probe.check.create", "notice", "Custom command check added to a device (full command line and pattern)"),
    Event("PRB005", "probe.check.delete", "notice", "Custom command check removed from a device"),
    Event("PRB006", "probe.command.start", "notice", "On-demand command about to run on a device (full command line, committed before it is sent)"),
    Event("PRB007", "probe.target.refused", "warning", "The probe target policy refused a device's address (loopback, own address or outside the allowed subnets)"),
    Event("ALR001", "probe.alert.open", "warning", "Alert opened (threshold crossed, device down or host key changed)"),
    Event("ALR002", "probe.alert.resolve", "info", "Alert condition cleared"),
    Event("ALR003", "probe.alert.acknowledge", "notice", "Operator acknowledged an alert"),
)

BY_ACTION: dict[str, Event] = {e.action: e for e in CATALOGUE}


def require(action: str) -> Event:
    """The catalogue entry for action; KeyError for an unlisted action (a programming error)."""
    return BY_ACTION[action]
