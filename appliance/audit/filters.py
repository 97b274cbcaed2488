"""Turning user-supplied filter values (query string, CLI options) into an AuditFilter."""

from __future__ import annotations

from datetime import UTC, datetime

from appliance.audit.models import AuditFilter

FIELDS = ("since", "until", "actor", "action", "outcome", "target")
OUTCOMES = ("", "success", "failure", "denied")


def _time(value: str, field: str, errors: dict) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors[field] = "Use a date and time like 2026-11-23T14:30 (UTC)."
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse(values) -> tuple[AuditFilter, dict[str, str], dict[str, str]]:
    """Filter from a mapping of strings; returns (filter, cleaned raw values, field errors)."""
    raw = {k: str(values.get(k) or "")[:200].strip() for k in FIELDS}
    errors: dict[str, str] = {}
    since, until = _time(raw["since"], "since", errors), _time(raw["until"], "until", errors)
    if raw["outcome"] not in OUTCOMES:
        errors["outcome"] = "Choose success, failure or denied."
    if since is not None and until is not None and until <= since:
        errors["until"] = "The end must be after the start."
    if errors:
        return AuditFilter(), raw, errors
    return AuditFilter(since=since, until=until, actor=raw["actor"], action=raw["action"], outcome=raw["outcome"],
                       target=raw["target"]), raw, errors
