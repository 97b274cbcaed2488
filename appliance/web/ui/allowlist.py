"""Settings -> IP allow list (ACL-3): admins, with step-up. Refuses a list that would
lock out the admin's own address; saving is audited by AllowList.replace."""

from __future__ import annotations

from litestar import Request, Response, get, post

from appliance.errors import ValidationError
from appliance.web.deps import actor, client, principal, services
from appliance.web.guards import permission
from appliance.web.ui.forms import on_page, page, redirect, text

ALLOWLIST = permission("settings.allowlist")


def _form(request: Request, networks: str, *, status: int = 200, errors: dict | None = None, message: str = "",
          notice: str = "") -> Response:
    trusted = services(request).config.web.trusted_proxies
    return page(request, "allowlist/index.html", status=status, networks=networks, errors=errors or {},
                message=message, notice=notice, caller=client(request), trusted_proxies=trusted)


@get("/settings/allowlist", guards=[ALLOWLIST], name="allowlist")
async def allowlist_page(request: Request) -> Response:
    svc = services(request)
    svc.auth.stepup.require_recent_auth(principal(request))
    notice = "The IP allow list was saved." if request.query_params.get("saved") else ""
    return _form(request, "\n".join(str(n) for n in svc.allowlist.networks()), notice=notice)


@post("/settings/allowlist", guards=[ALLOWLIST], name="allowlist_submit", opt=on_page("/settings/allowlist"))
async def allowlist_submit(request: Request) -> Response:
    svc = services(request)
    form = await request.form()
    raw = ""
    try:
        raw = text(form, "networks")
        svc.auth.stepup.require_recent_auth(principal(request))
        await svc.allowlist.replace(raw.splitlines(), caller=client(request), actor=actor(request))
    except ValidationError as exc:
        errors = {"networks": "; ".join(exc.details.values()) if exc.details else exc.message}
        return _form(request, raw, status=400, errors=errors, message=exc.message)
    return redirect("/settings/allowlist?saved=1")


ROUTES = [allowlist_page, allowlist_submit]
