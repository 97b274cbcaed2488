"""The report period the login report reads from `since`/`until` text, for its page and its API alike.

A neutral web module: the page (ui/reports.py) and the API (api/audit.py) both use it, and
page modules do not import API modules.
"""

from __future__ import annotations

from appliance.audit import filters, report
from appliance.errors import ValidationError

DEFAULT_DAYS = 7


def parse_period(since: str, until: str, now: float) -> tuple[float, float]:
    """Report period from ISO times; default the last 7 days; at most MAX_PERIOD_DAYS."""
    flt, _, errors = filters.parse({"since": since, "until": until})
    if errors:
        raise ValidationError("The period is not valid.", details=errors)
    end = flt.until if flt.until is not None else now
    start = flt.since if flt.since is not None else end - DEFAULT_DAYS * 86400
    if end <= start:
        raise ValidationError("The period is not valid.", details={"until": "The end must be after the start."})
    if end - start > report.MAX_PERIOD_DAYS * 86400:
        raise ValidationError("The period is too long.",
                              details={"since": f"Choose a period of at most {report.MAX_PERIOD_DAYS} days."})
    return start, end
