"""Settings -> Security policy (AUTH-3, -4, -6, -7): admins, with step-up.

The form shows the stored policy (config defaults until first saved); saving is
audited with old and new values by the service.
"""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get, post

from appliance.auth.models import SecurityPolicy
from appliance.auth.securitypolicy import POLICY_LIMITS, TOTP_POLICIES
from appliance.errors import ValidationError
from appliance.web.deps import client, principal, services
from appliance.web.guards import permission
from appliance.web.ui.forms import on_page, page, redirect, text

SECURITY = permission("settings.security")


def _form(request: Request, values: dict, *, status: int = 200, errors: dict | None = None, message: str = "",
          notice: str = "") -> Response:
    return page(request, "settings/security.html", status=status, values=values, errors=errors or {},
                message=message, notice=notice, limits=POLICY_LIMITS, totp_policies=TOTP_POLICIES,
                defaults=SecurityPolicy())  # bounds and built-in defaults: [auth]'s types (config.py)


@get("/settings/security", guards=[SECURITY], name="settings_security")
async def security_page(request: Request) -> Response:
    auth = services(request).auth
    auth.stepup.require_recent_auth(principal(request))  # ask for the password before showing the form, not after
    notice = "The security policy was saved." if request.query_params.get("saved") else ""
    return _form(request, msgspec.structs.asdict(auth.policy.current), notice=notice)


@post("/settings/security", guards=[SECURITY], name="settings_security_submit", opt=on_page("/settings/security"))
async def security_submit(request: Request) -> Response:
    form = await request.form()
    values: dict = {}
    try:
        values = {name: text(form, name) for name in (*POLICY_LIMITS, "totp_policy")}
        values["require_composition"] = text(form, "require_composition")
        await services(request).auth.policy.update(principal(request), values, source=client(request))
    except ValidationError as exc:
        values["require_composition"] = values.get("require_composition") == "on"
        return _form(request, values, status=400, errors=exc.details, message=exc.message)
    return redirect("/settings/security?saved=1")


ROUTES = [security_page, security_submit]
