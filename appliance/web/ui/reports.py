"""Login-attempts report (AUDIT-5): successes and failures per user and per source
address over a chosen period; CSV download (formula-neutralised, audited)."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Request, Response, get

from appliance.audit import report
from appliance.audit.events import Event
from appliance.errors import ValidationError
from appliance.web.deps import actor, services
from appliance.web.guards import permission
from appliance.web.period import parse_period
from appliance.web.ui.forms import page

REPORT = permission("audit.report")


def _period_input(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M")


def _raw(request: Request) -> tuple[str, str]:
    return (str(request.query_params.get("since") or "")[:40].strip(),
            str(request.query_params.get("until") or "")[:40].strip())


@get("/audit/logins", guards=[REPORT], name="login_report")
async def login_report(request: Request) -> Response:
    svc = services(request)
    since, until = _raw(request)
    try:
        start, end = parse_period(since, until, svc.clock.now())
    except ValidationError as exc:
        return page(request, "reports/logins.html", status=400, rep=None, errors=exc.details, message=exc.message,
                    since=since, until=until, query="")
    rep = await svc.db.read_in_thread(lambda conn: report.login_report(conn, since=start, until=end))
    query = f"since={_period_input(start)}&until={_period_input(end)}"
    return page(request, "reports/logins.html", rep=rep, errors={}, since=_period_input(start),
                until=_period_input(end), query=query)


@get("/audit/logins.csv", guards=[REPORT], name="login_report_csv")
async def login_report_csv(request: Request) -> Response:
    svc = services(request)
    since, until = _raw(request)
    start, end = parse_period(since, until, svc.clock.now())
    now = svc.clock.now()
    # Recorded before the report is read: if it cannot be written there is no export (fail closed).
    await svc.audit.record_alone(Event.AUDIT_REPORT_EXPORT, actor=actor(request), ts=now, target="report:logins",
                                 details={"since": _period_input(start), "until": _period_input(end), "format": "csv"})
    rep = await svc.db.read_in_thread(lambda conn: report.login_report(conn, since=start, until=end))
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(report.to_csv(rep), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="outpost-logins-{stamp}.csv"'})


ROUTES = [login_report, login_report_csv]
