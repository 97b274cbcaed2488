"""Dashboard (appliance self-health) and About pages.

What a page shows follows the permission table, not only whether the page opens: the
health figures need health.read (the auditor role has none), the fleet needs probe.view,
and the absolute location of files on the appliance is shown to admins only
(tests/web/test_role_matrix.py checks the parts of pages, too).
"""

from __future__ import annotations

from litestar import Request, Response, get

from appliance.auth.permissions import allowed
from appliance.web.guards import permission, principal_of
from appliance.web.render import render


def _health(request: Request):
    return request.app.state.services.health()


def _can(request: Request, permission_name: str) -> bool:
    return allowed(principal_of(request).role, permission_name)


@get("/dashboard", guards=[permission("dashboard.view")], name="dashboard")
async def dashboard(request: Request) -> Response:
    show_health = _can(request, "health.read")
    return render(request.app.state.templates, request, "dashboard.html", health=_health(request) if show_health else None,
                  show_fleet=_can(request, "probe.view"), show_audit=_can(request, "audit.read"))


@get("/dashboard/health", guards=[permission("health.read")], name="dashboard_health")
async def dashboard_health(request: Request) -> Response:
    """The health panel alone, refreshed by htmx."""
    return render(request.app.state.templates, request, "health_panel.html", health=_health(request))


@get("/dashboard/health.json", guards=[permission("health.read")], name="dashboard_health_json")
async def dashboard_health_json(request: Request) -> Response:
    return Response(_health(request))


@get("/about", guards=[permission("about.view")], name="about")
async def about(request: Request) -> Response:
    services = request.app.state.services
    return render(request.app.state.templates, request, "about.html", tls=services.tls.info(),
                  licences=services.licences,
                  ca_path=str(services.tls.ca_pem_path) if _can(request, "settings.tls") else "",
                  integrity=services.integrity, development_build=services.updates.development_build)


ROUTES = [dashboard, dashboard_health, dashboard_health_json, about]
