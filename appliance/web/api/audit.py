"""/api/v1/audit (AUDIT-4, AUDIT-5): list with the UI's filters and keyset pagination,
streamed CSV / JSON-lines export (audited), and the login-attempts report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Stream

from appliance.audit import filters, queries, report
from appliance.audit.models import AuditRecord
from appliance.clock import iso
from appliance.errors import ValidationError
from appliance.web.api.common import MAX_ID, MAX_LIMIT
from appliance.web.deps import actor as actor_of
from appliance.web.deps import services
from appliance.web.guards import permission
from appliance.web.period import parse_period

Text = Annotated[str, Parameter(max_length=200)]
TimeText = Annotated[str, Parameter(max_length=40,
                                    description="ISO time, UTC unless an offset is given, e.g. 2026-11-23T14:30")]


class AuditRecordOut(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    time: str
    code: str
    action: str
    actor_type: str
    actor: str
    source: str
    target: str
    outcome: str
    details: dict[str, Any]
    hash: str


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    """Newest first. Pass next_cursor as `cursor` for the next page; null: no more."""

    items: list[AuditRecordOut]
    limit: int
    next_cursor: int | None


class CountOut(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    successes: int
    failures: int


class PairOut(msgspec.Struct, frozen=True, kw_only=True):
    user: str
    source: str
    successes: int
    failures: int


class LoginReportOut(msgspec.Struct, frozen=True, kw_only=True):
    since: str
    until: str
    successes: int
    failures: int
    by_user: list[CountOut]
    by_source: list[CountOut]
    by_user_and_source: list[PairOut]


def _record_out(r: AuditRecord) -> AuditRecordOut:
    try:
        details = msgspec.json.decode(r.details)
    except msgspec.DecodeError:
        details = {}
    return AuditRecordOut(seq=r.seq, time=iso(r.ts), code=r.code, action=r.action, actor_type=r.actor_type,
                          actor=r.actor, source=r.source, target=r.target, outcome=r.outcome,
                          details=details if isinstance(details, dict) else {}, hash=r.hash.hex())


def _filter(since: str, until: str, actor_: str, action: str, outcome: str, target: str):
    flt, raw, errors = filters.parse({"since": since, "until": until, "actor": actor_, "action": action,
                                      "outcome": outcome, "target": target})
    if errors:
        raise ValidationError("The filter is not valid.", details=errors)
    return flt, raw


@get("/api/v1/audit", guards=[permission("audit.read")], name="api_audit_list", tags=["audit"],
     summary="List audit records", description="Filters as in the audit page; newest first; cursor pagination.")
async def list_audit(request: Request, since: TimeText = "", until: TimeText = "",
                     actor: Text = "", action: Text = "", outcome: Literal["", "success", "failure", "denied"] = "",
                     target: Text = "", limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 100,
                     cursor: Annotated[int | None, Parameter(ge=1, le=MAX_ID)] = None) -> AuditPage:
    flt, _ = _filter(since, until, actor, action, outcome, target)
    rows = await services(request).db.read_in_thread(
        lambda conn: queries.list_records_before(conn, flt, limit=limit, before=cursor))
    return AuditPage(items=[_record_out(r) for r in rows], limit=limit,
                     next_cursor=rows[-1].seq if len(rows) == limit else None)


@get("/api/v1/audit/export", guards=[permission("audit.export")], name="api_audit_export", tags=["audit"],
     summary="Export audit records (streamed)", media_type="text/csv",
     description="CSV (formula-neutralised) or JSON lines, oldest first, streamed in constant memory. Audited.")
async def export_audit(request: Request, format: Literal["csv", "jsonl"] = "csv", since: TimeText = "",
                       until: TimeText = "", actor: Text = "", action: Text = "",
                       outcome: Literal["", "success", "failure", "denied"] = "", target: Text = "") -> Stream:
    flt, raw = _filter(since, until, actor, action, outcome, target)
    # Recorded before streaming starts: if it cannot be written there is no export (fail closed).
    out = await services(request).audit.export(actor_of(request), flt, format, via="api", shown=raw)
    return Stream(out.chunks(), media_type=out.media_type,
                  headers={"Content-Disposition": f'attachment; filename="{out.filename}"'})


def _count_out(c: report.LoginCount) -> CountOut:
    return CountOut(key=c.key, successes=c.successes, failures=c.failures)


def report_out(rep: report.LoginReport) -> LoginReportOut:
    ok, failed = rep.totals
    return LoginReportOut(since=iso(rep.since), until=iso(rep.until), successes=ok, failures=failed,
                          by_user=[_count_out(c) for c in rep.by_user],
                          by_source=[_count_out(c) for c in rep.by_source],
                          by_user_and_source=[PairOut(user=p.user, source=p.source, successes=p.successes,
                                                      failures=p.failures) for p in rep.by_user_and_source])


@get("/api/v1/audit/logins", guards=[permission("audit.report")], name="api_login_report", tags=["audit"],
     summary="Login-attempts report", description="Successes and failures per user and source over a period "
                                                  "(default: the last 7 days).")
async def login_report(request: Request, since: TimeText = "", until: TimeText = "") -> LoginReportOut:
    svc = services(request)
    start, end = parse_period(since, until, svc.clock.now())
    rep = await svc.db.read_in_thread(lambda conn: report.login_report(conn, since=start, until=end))
    return report_out(rep)


ROUTES = [list_audit, export_audit, login_report]
