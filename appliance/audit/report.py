"""The login-attempts report (AUDIT-5): successes and failures per user and per
source address over a period, read from the audit log (no state of its own).

Invariants: read-only; bounded (at most ROW_LIMIT rows per table); CSV cells are
formula-neutralised like every audit export (audit/export.neutralise).
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

import msgspec

from appliance.audit import queries
from appliance.audit.export import neutralise
from appliance.clock import iso

if TYPE_CHECKING:
    from appliance.store.connection import Connection

ROW_LIMIT = 1000
MAX_PERIOD_DAYS = 400


class LoginCount(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    successes: int
    failures: int


class PairCount(msgspec.Struct, frozen=True, kw_only=True):
    user: str
    source: str
    successes: int
    failures: int


class LoginReport(msgspec.Struct, frozen=True, kw_only=True):
    since: float
    until: float
    by_user: list[LoginCount]
    by_source: list[LoginCount]
    by_user_and_source: list[PairCount]

    @property
    def totals(self) -> tuple[int, int]:
        return sum(c.successes for c in self.by_user), sum(c.failures for c in self.by_user)


def login_report(conn: Connection, *, since: float, until: float, limit: int = ROW_LIMIT) -> LoginReport:
    """The report for [since, until). Failed logins for unknown names count under the name tried."""
    by_user = [LoginCount(key=k, successes=s, failures=f)
               for k, s, f in queries.count_logins_by(conn, "actor", since=since, until=until, limit=limit)]
    by_source = [LoginCount(key=k, successes=s, failures=f)
                 for k, s, f in queries.count_logins_by(conn, "source", since=since, until=until, limit=limit)]
    pairs = [PairCount(user=u, source=src, successes=s, failures=f)
             for u, src, s, f in queries.count_logins_by_pair(conn, since=since, until=until, limit=limit)]
    return LoginReport(since=since, until=until, by_user=by_user, by_source=by_source, by_user_and_source=pairs)


def to_csv(report: LoginReport) -> bytes:
    """One CSV table: period, user, source, successes, failures (per user and source pair)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["period_start_utc", "period_end_utc", "user", "source", "successes", "failures"])
    start, end = iso(report.since), iso(report.until)
    for p in report.by_user_and_source:
        writer.writerow([neutralise(c) for c in (start, end, p.user, p.source, str(p.successes), str(p.failures))])
    return buf.getvalue().encode("utf-8")
