"""Probe pages: fleet status, the device probe panel and charts, alerts, on-demand test and command.

Thin over ProbeService. Viewing needs probe.view; acknowledging alerts.ack; running
anything on a device probe.run (operator, admin). Command output is shown to the
user who ran it and stored nowhere (the audit keeps the command's name only).
"""

from __future__ import annotations

from litestar import Request, Response, get, post

from appliance.errors import NotFoundError, ValidationError
from appliance.web.deps import actor, services
from appliance.web.guards import permission
from appliance.web.ui.forms import on_page, page, redirect, text

VIEW = permission("probe.view")
RUN = permission("probe.run")


def _probe(request: Request):
    return services(request).probe


async def _status_or_404(request: Request, device_id: int):
    status = await _probe(request).device_status(device_id)
    if status is None:
        raise NotFoundError("No such device.")
    return status


@get("/probe", guards=[VIEW], name="probe_fleet_page")
async def fleet_page(request: Request) -> Response:
    return page(request, "probe/fleet_page.html", **await _fleet_context(request))


@get("/probe/fleet", guards=[VIEW], name="probe_fleet")
async def fleet_partial(request: Request) -> Response:
    """The fleet table and probe health alone (dashboard, refreshed by htmx)."""
    return page(request, "probe/fleet.html", **await _fleet_context(request))


async def _fleet_context(request: Request) -> dict:
    svc = services(request)
    return {"fleet": await svc.probe.fleet(), "stats": svc.probe_scheduler.stats(),
            "unacked": await svc.probe.unacked_alerts(), "now": svc.clock.now()}


@get("/devices/{device_id:int}/probe-panel", guards=[VIEW], name="probe_panel")
async def probe_panel(request: Request, device_id: int) -> Response:
    probe = _probe(request)
    status = await _status_or_404(request, device_id)
    return page(request, "probe/panel.html", st=status, events=await probe.events(device_id, 10),
                alerts=await probe.alerts(device_id=device_id), checks=await probe.checks(device_id),
                disks=_disks(status))


def _disks(status) -> list:
    import json

    try:
        return json.loads(status.disks)[:32]
    except ValueError:
        return []


@get("/probe/devices/{device_id:int}", guards=[VIEW], name="probe_device")
async def device_page(request: Request, device_id: int) -> Response:
    probe = _probe(request)
    status = await _status_or_404(request, device_id)
    return page(request, "probe/device.html", st=status, events=await probe.events(device_id, 50),
                alerts=await probe.alerts(device_id=device_id, open_only=False), checks=await probe.checks(device_id),
                disks=_disks(status))


@get("/probe/devices/{device_id:int}/series.json", guards=[VIEW], name="probe_series")
async def series(request: Request, device_id: int) -> Response:
    await _status_or_404(request, device_id)
    data = await _probe(request).series(device_id, request.query_params.get("range", "1h")[:4])
    return Response(data)


# --- alerts ---------------------------------------------------------------------------------

@get("/alerts", guards=[VIEW], name="alerts")
async def alerts_page(request: Request) -> Response:
    show_all = request.query_params.get("all") == "1"
    alerts = await _probe(request).alerts(open_only=not show_all)
    notice = "Alert acknowledged." if request.query_params.get("acked") else ""
    return page(request, "probe/alerts.html", alerts=alerts, show_all=show_all, notice=notice)


@post("/alerts/{alert_id:int}/ack", guards=[permission("alerts.ack")], name="alerts_ack", opt=on_page("/alerts"))
async def acknowledge(request: Request, alert_id: int) -> Response:
    try:
        await _probe(request).acknowledge(alert_id, actor(request))
    except ValidationError as exc:
        alerts = await _probe(request).alerts(open_only=True)
        return page(request, "probe/alerts.html", alerts=alerts, show_all=False, notice="", message=exc.message,
                    status=409)
    return redirect("/alerts?acked=1")


# --- on demand (PROBE-5) and custom checks -------------------------------------------------------

async def _run_page(request: Request, device_id: int, *, status: int = 200, **context) -> Response:
    st = await _status_or_404(request, device_id)
    return page(request, "probe/run.html", st=st, checks=await _probe(request).checks(device_id), status=status,
                **{"values": {}, "errors": {}, "message": "", "test": None, "result": None, **context})


@get("/probe/devices/{device_id:int}/run", guards=[RUN], name="probe_run_page")
async def run_page(request: Request, device_id: int) -> Response:
    return await _run_page(request, device_id)


@post("/probe/devices/{device_id:int}/test", guards=[RUN], name="probe_test",
      opt=on_page("/probe/devices/{device_id}/run"))
async def connectivity_test(request: Request, device_id: int) -> Response:
    report = await _probe(request).test_connectivity(device_id, actor(request))
    return await _run_page(request, device_id, test=report)


@post("/probe/devices/{device_id:int}/command", guards=[RUN], name="probe_command",
      opt=on_page("/probe/devices/{device_id}/run"))
async def run_command(request: Request, device_id: int) -> Response:
    form = await request.form()
    try:
        command = text(form, "command")
        result = await _probe(request).run_command(device_id, command, actor(request))
    except ValidationError as exc:
        return await _run_page(request, device_id, status=400, values={"command": form.get("command", "")[:1000]},
                               errors=exc.details, message=exc.message)
    return await _run_page(request, device_id, values={"command": command}, result=result)


@post("/probe/devices/{device_id:int}/checks", guards=[RUN], name="probe_check_add",
      opt=on_page("/probe/devices/{device_id}/run"))
async def add_check(request: Request, device_id: int) -> Response:
    await _status_or_404(request, device_id)
    form = await request.form()
    values = {}
    try:
        values = {k: text(form, k) for k in ("name", "command", "expect_exit", "expect_regex", "timeout", "output_cap")}
        errors: dict[str, str] = {}
        expect_exit = _int(values["expect_exit"], "expect_exit", errors, allow_empty=True, lo=0, hi=255)
        timeout = _int(values["timeout"] or "10", "timeout", errors, lo=1, hi=300)
        cap = _int(values["output_cap"] or "65536", "output_cap", errors, lo=1024, hi=1 << 20)
        if errors or timeout is None or cap is None:  # None only with an error recorded
            raise ValidationError("The check is not valid.", details=errors)
        await _probe(request).add_check(device_id, name=values["name"], command=values["command"],
                                        expect_exit=expect_exit, expect_regex=values["expect_regex"] or None,
                                        timeout=float(timeout), output_cap=cap, actor=actor(request))
    except ValidationError as exc:
        return await _run_page(request, device_id, status=400, check_values=values, check_errors=exc.details,
                               message=exc.message)
    services(request).probe_scheduler.device_changed(device_id)
    return redirect(f"/probe/devices/{device_id}/run")


@post("/probe/devices/{device_id:int}/checks/{check_id:int}/delete", guards=[RUN], name="probe_check_delete",
      opt=on_page("/probe/devices/{device_id}/run"))
async def delete_check(request: Request, device_id: int, check_id: int) -> Response:
    await _probe(request).delete_check(device_id, check_id, actor(request))
    return redirect(f"/probe/devices/{device_id}/run")


def _int(value: str, name: str, errors: dict, *, allow_empty: bool = False, lo: int, hi: int) -> int | None:
    value = value.strip()
    if not value and allow_empty:
        return None
    if not value.isdigit() or not lo <= int(value) <= hi:
        errors[name] = f"Enter a whole number from {lo} to {hi}."
        return None
    return int(value)


ROUTES = [fleet_page, fleet_partial, probe_panel, device_page, series, alerts_page, acknowledge, run_page,
          connectivity_test, run_command, add_check, delete_check]
