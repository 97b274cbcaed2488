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
    Event("ACC001", "access.denied", "warning", "Request refused by access control"),
    Event("ACC002", "access.csrf.denied", "alert", "Cross-site or token-less state change refused"),
    Event("AUD001", "audit.export", "notice", "Audit log exported"),
    Event("AUD002", "audit.verify", "info", "Audit chain verified"),
    Event("AUD003", "audit.purge", "notice", "Audit records past retention purged"),
    Event("TLS001", "tls.ca.generate", "notice", "Local certificate authority generated"),
    Event("TLS002", "tls.cert.generate", "notice", "Server certificate generated"),
    Event("TLS003", "tls.cert.renew", "notice", "Server certificate renewed"),
)

BY_ACTION: dict[str, Event] = {e.action: e for e in CATALOGUE}


def require(action: str) -> Event:
    """The catalogue entry for action; KeyError for an unlisted action (a programming error)."""
    return BY_ACTION[action]
