"""The audit event catalogue: one enum member per event, with a stable code, a severity and a label.

Members are named after the action ("device.create" is `Event.DEVICE_CREATE`), in the style of
Warehouse's events/tags.py, so a misspelt event fails at import and under mypy instead of at run
time. A code never changes meaning once shipped (Teleport's lib/events/codes.go): new events get
new codes. Actions are named "<capability>.<subject>.<action>". tests/audit/test_events.py checks
that codes are unique and labelled, and that the code records no event by a bare string.
"""

from __future__ import annotations

from enum import StrEnum, unique


class Severity(StrEnum):
    INFO = "info"
    NOTICE = "notice"
    WARNING = "warning"
    ALERT = "alert"


@unique  # two members with one action would silently be aliases
class Event(StrEnum):
    """An audit event. `.value`, `.action` and `str()` are the dotted action name stored in the log.

    A StrEnum, so an event compares equal to its action name (filters, templates, tests); the
    audit log itself still refuses a plain string (log.record checks the type)."""

    action: str
    code: str
    severity: Severity
    label: str

    def __new__(cls, action: str, code: str, severity: str, label: str) -> Event:
        member = str.__new__(cls, action)
        member._value_ = action
        member.action, member.code, member.severity, member.label = action, code, Severity(severity), label
        return member

    SYSTEM_START = ("system.start", "SYS001", "info", "Appliance started")
    SYSTEM_STOP = ("system.stop", "SYS002", "info", "Appliance stopped")
    STORE_MIGRATE = ("store.migrate", "STO001", "notice", "Database schema migrated")
    SETUP_COMPLETE = ("setup.complete", "SET001", "notice", "First-run setup completed, first admin created")
    SETUP_FAILURE = ("setup.failure", "SET002", "warning", "First-run setup attempt refused")
    SETUP_CODE_ISSUE = ("setup.code.issue", "SET003", "notice", "One-time setup code issued")
    AUTH_LOGIN_SUCCESS = ("auth.login.success", "AUT001", "info", "Login succeeded")
    AUTH_LOGIN_FAILURE = ("auth.login.failure", "AUT002", "warning", "Login failed")
    AUTH_LOGOUT = ("auth.logout", "AUT003", "info", "Logged out")
    AUTH_LOCKOUT = ("auth.lockout", "AUT004", "alert", "Account locked after repeated failed logins")
    AUTH_THROTTLE = ("auth.throttle", "AUT005", "warning", "Source address throttled")
    AUTH_SESSION_EXPIRE = ("auth.session.expire", "AUT006", "info", "Session expired")
    AUTH_PASSWORD_REHASH = ("auth.password.rehash", "AUT007", "info", "Password hash upgraded to current parameters")
    AUTH_LOGIN_PASSWORD_OK = ("auth.login.password_ok", "AUT008", "info",
                              "Password accepted; waiting for the second factor")
    AUTH_SESSION_REVOKE = ("auth.session.revoke", "AUT009", "notice",
                           "Sessions revoked (by the user, an admin, or a password/2FA/role change)")
    AUTH_SESSION_ROTATE = ("auth.session.rotate", "AUT010", "info", "Session id replaced after a privilege change")
    AUTH_REAUTH = ("auth.reauth", "AUT011", "info", "Re-authentication for a sensitive action (step-up)")
    USER_CREATE = ("user.create", "USR001", "notice", "User created with a temporary password")
    USER_ROLE_CHANGE = ("user.role.change", "USR002", "alert", "User role changed")
    USER_DISABLE = ("user.disable", "USR003", "notice", "User disabled")
    USER_ENABLE = ("user.enable", "USR004", "notice", "User enabled")
    USER_UNLOCK = ("user.unlock", "USR005", "notice", "Locked account unlocked by an admin")
    USER_PASSWORD_RESET = ("user.password.reset", "USR006", "alert",
                           "Password reset by an admin (temporary password issued)")
    USER_PASSWORD_CHANGE = ("user.password.change", "USR007", "notice",
                            "Own password changed (or refused: wrong current password)")
    USER_ADMIN_RECOVER = ("user.admin.recover", "USR008", "alert",
                          "Admin recovered with `outpost reset-admin` on the local console")
    MFA_TOTP_ENROL_START = ("mfa.totp.enrol.start", "MFA001", "info",
                            "Two-factor set-up started (seed issued, not yet active)")
    MFA_TOTP_ENABLE = ("mfa.totp.enable", "MFA002", "notice",
                       "Two-factor sign-in turned on or replaced (or refused: wrong code)")
    MFA_TOTP_DISABLE = ("mfa.totp.disable", "MFA003", "alert", "Two-factor sign-in turned off by its user")
    MFA_TOTP_RESET = ("mfa.totp.reset", "MFA004", "alert", "Two-factor sign-in removed by an admin")
    MFA_RECOVERY_USE = ("mfa.recovery.use", "MFA005", "warning", "Recovery code used to sign in")
    MFA_RECOVERY_REGENERATE = ("mfa.recovery.regenerate", "MFA006", "notice", "Recovery codes replaced")
    POLICY_SECURITY_UPDATE = ("policy.security.update", "POL001", "alert",
                              "Security policy changed (old and new values recorded)")
    ACCESS_DENIED = ("access.denied", "ACC001", "warning", "Request refused by access control")
    ACCESS_CSRF_DENIED = ("access.csrf.denied", "ACC002", "alert", "Cross-site or token-less state change refused")
    AUDIT_EXPORT = ("audit.export", "AUD001", "notice", "Audit log exported")
    AUDIT_VERIFY = ("audit.verify", "AUD002", "info", "Audit chain verified")
    AUDIT_PURGE = ("audit.purge", "AUD003", "notice", "Audit records past retention purged")
    TLS_CA_GENERATE = ("tls.ca.generate", "TLS001", "notice", "Local certificate authority generated")
    TLS_CERT_GENERATE = ("tls.cert.generate", "TLS002", "notice", "Server certificate generated")
    TLS_CERT_RENEW = ("tls.cert.renew", "TLS003", "notice", "Server certificate renewed")
    UPDATE_VERIFY = ("update.verify", "UPD001", "notice",
                     "Update bundle staged and verified (failure: refused, with the reason)")
    UPDATE_INSTALL = ("update.install", "UPD002", "notice", "Update installed into the inactive slot")
    UPDATE_SNAPSHOT = ("update.snapshot", "UPD003", "info", "Database snapshot taken before an update")
    UPDATE_SWITCH = ("update.switch", "UPD004", "warning", "Active slot switched to a new version")
    UPDATE_HEALTH = ("update.health", "UPD005", "notice", "Health gate of a new version (failure: it did not come up)")
    UPDATE_ROLLBACK = ("update.rollback", "UPD006", "warning", "Rollback to the previous slot requested")
    UPDATE_ROLLBACK_DONE = ("update.rollback.done", "UPD007", "warning",
                            "Rolled back to the previous slot, database snapshot restored")
    INTEGRITY_CHECK = ("integrity.check", "INT001", "info", "Integrity self-check run")
    INTEGRITY_MISMATCH = ("integrity.mismatch", "INT002", "alert",
                          "Integrity self-check failed: installed files differ from the signed manifest")
    TLS_CERT_IMPORT = ("tls.cert.import", "CRT001", "notice", "Customer certificate imported and now served")
    TLS_CERT_IMPORT_REFUSED = ("tls.cert.import.refused", "CRT002", "warning", "Customer certificate import refused")
    TLS_CERT_ROLLBACK = ("tls.cert.rollback", "CRT003", "notice", "Certificate rolled back to the previous one")
    TLS_CERT_REGENERATE = ("tls.cert.regenerate", "CRT004", "notice",
                           "Generated local certificate served again (regenerated)")
    BACKUP_CREATE = ("backup.create", "BAK001", "notice", "Encrypted backup written")
    BACKUP_FAILURE = ("backup.failure", "BAK002", "warning", "Backup failed")
    BACKUP_RESTORE = ("backup.restore", "BAK003", "alert", "Backup restored into the data directory")
    BACKUP_DOWNLOAD = ("backup.download", "BAK004", "notice", "Backup file downloaded")
    STORE_REKEY = ("store.rekey", "RKY001", "alert", "Database key rotated")
    APIKEY_CREATE = ("apikey.create", "KEY001", "notice", "API key created (or refused: role too high)")
    APIKEY_REVOKE = ("apikey.revoke", "KEY002", "notice", "API key revoked (or refused: not the owner)")
    APIKEY_AUTH_FAILURE = ("apikey.auth.failure", "KEY003", "warning",
                           "API request with an invalid, revoked or expired key refused")
    ACCESS_ALLOWLIST_UPDATE = ("access.allowlist.update", "ACL001", "alert", "IP allow list changed")
    ACCESS_ALLOWLIST_RESET = ("access.allowlist.reset", "ACL002", "alert",
                              "IP allow list cleared from the local command line")
    API_WRITE = ("api.write", "API001", "info", "State-changing API request made with an API key")
    AUDIT_REPORT_EXPORT = ("audit.report.export", "RPT001", "notice", "Login report exported")
    DEVICE_CREATE = ("device.create", "DEV001", "notice", "Device added to the inventory")
    DEVICE_UPDATE = ("device.update", "DEV002", "notice", "Device changed")
    DEVICE_DELETE = ("device.delete", "DEV003", "notice", "Device deleted")
    DEVICE_IMPORT = ("device.import", "DEV004", "notice", "Devices imported from CSV (all rows, or none and refused)")
    DEVICE_BINDING_REQUEST = (
        "device.binding.request", "DEV005", "warning",
        "Device uses a stored credential at a new address, port or host key: nothing secret is sent until an admin"
        " approves")
    DEVICE_BINDING_APPROVE = ("device.binding.approve", "DEV006", "notice",
                              "Admin approved a device's credential binding (address, port and credential)")
    CREDENTIAL_CREATE = ("credential.create", "CRD001", "notice", "SSH credential created (no secret recorded)")
    CREDENTIAL_UPDATE = ("credential.update", "CRD002", "notice",
                         "SSH credential changed or its secret replaced (no secret recorded)")
    CREDENTIAL_DELETE = ("credential.delete", "CRD003", "notice", "SSH credential deleted")
    DEVICE_HOSTKEY_PIN = ("device.hostkey.pin", "HKY001", "notice",
                          "Host key pinned on first contact (trust on first use)")
    DEVICE_HOSTKEY_PRESET = ("device.hostkey.preset", "HKY002", "notice",
                             "Host key pinned from an operator-preset key or fingerprint")
    DEVICE_HOSTKEY_MISMATCH = ("device.hostkey.mismatch", "HKY003", "alert",
                               "Device presented a host key that does not match its pin")
    DEVICE_HOSTKEY_REPIN = ("device.hostkey.repin", "HKY004", "alert", "Operator reviewed and trusted a new host key")
    DEVICE_HOSTKEY_FORGET = ("device.hostkey.forget", "HKY005", "warning", "Operator removed a host-key pin")
    PROBE_STATUS_CHANGE = ("probe.status.change", "PRB001", "notice",
                           "Device status changed (up, degraded, down, auth failed, host key changed, unreachable)")
    PROBE_CONNECTIVITY_TEST = ("probe.connectivity.test", "PRB002", "info",
                               "On-demand connectivity test run against a device")
    PROBE_COMMAND_RUN = ("probe.command.run", "PRB003", "notice",
                         "On-demand command finished on a device (full command line and exit status, never output)")
    PROBE_CHECK_CREATE = ("probe.check.create", "PRB004", "notice",
                          "Custom command check added to a device (full command line and pattern)")
    PROBE_CHECK_DELETE = ("probe.check.delete", "PRB005", "notice", "Custom command check removed from a device")
    PROBE_COMMAND_START = (
        "probe.command.start", "PRB006", "notice",
        "On-demand command about to run on a device (full command line, committed before it is sent)")
    PROBE_TARGET_REFUSED = (
        "probe.target.refused", "PRB007", "warning",
        "The probe target policy refused a device's address (loopback, own address or outside the allowed subnets)")
    PROBE_ALERT_OPEN = ("probe.alert.open", "ALR001", "warning",
                        "Alert opened (threshold crossed, device down or host key changed)")
    PROBE_ALERT_RESOLVE = ("probe.alert.resolve", "ALR002", "info", "Alert condition cleared")
    PROBE_ALERT_ACKNOWLEDGE = ("probe.alert.acknowledge", "ALR003", "notice", "Operator acknowledged an alert")


def _check_codes_unique() -> None:
    seen: dict[str, Event] = {}
    for event in Event:
        if event.code in seen:
            raise RuntimeError(f"audit code {event.code} is used by {seen[event.code].action} and {event.action}")
        seen[event.code] = event


_check_codes_unique()
