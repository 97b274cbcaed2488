"""Dashboard (appliance self-health) and About pages.

What a page shows follows the permission table, not only whether the page opens: the
health figures need health.read (the auditor role has none), the fleet needs probe.view,
and the absolute location of files on the appliance is shown to admins only
(tests/web/test_role_matrix.py checks the parts of pages, too).
"""

from __future__ import annotations

from litestar import Request, Response, get

from appliance.auth.permissions import allowed
from appliance.web.deps import principal, services
from appliance.web.guards import permission
from appliance.web.ui.forms import page


def _health(request: Request):
    return services(request).health()


def _can(request: Request, permission_name: str) -> bool:
    return allowed(principal(request).role, permission_name)


@get("/dashboard", guards=[permission("dashboard.view")], name="dashboard")
async def dashboard(request: Request) -> Response:
    show_health = _can(request, "health.read")
    return page(request, "dashboard.html", health=_health(request) if show_health else None,
                show_fleet=_can(request, "probe.view"), show_audit=_can(request, "audit.read"))


@get("/dashboard/health", guards=[permission("health.read")], name="dashboard_health")
async def dashboard_health(request: Request) -> Response:
    """The health panel alone, refreshed by htmx."""
    return page(request, "health_panel.html", health=_health(request))


@get("/dashboard/health.json", guards=[permission("health.read")], name="dashboard_health_json")
async def dashboard_health_json(request: Request) -> Response:
    return Response(_health(request))


@get("/about", guards=[permission("about.view")], name="about")
async def about(request: Request) -> Response:
    svc = services(request)
    return page(request, "about.html", tls=svc.tls.info(), licences=svc.licences,
                ca_path=str(svc.tls.ca_pem_path) if _can(request, "settings.tls") else "",
                integrity=svc.integrity, development_build=svc.updates.development_build)


ROUTES = [dashboard, dashboard_health, dashboard_health_json, about]
