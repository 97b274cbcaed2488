"""Dashboard (appliance self-health) and About pages."""

from __future__ import annotations

from litestar import Request, Response, get

from appliance.web.guards import permission
from appliance.web.render import render


def _health(request: Request):
    return request.app.state.services.health()


@get("/dashboard", guards=[permission("dashboard.view")], name="dashboard")
async def dashboard(request: Request) -> Response:
    return render(request.app.state.templates, request, "dashboard.html", health=_health(request))


@get("/dashboard/health", guards=[permission("dashboard.view")], name="dashboard_health")
async def dashboard_health(request: Request) -> Response:
    """The health panel alone, refreshed by htmx."""
    return render(request.app.state.templates, request, "health_panel.html", health=_health(request))


@get("/dashboard/health.json", guards=[permission("dashboard.view")], name="dashboard_health_json")
async def dashboard_health_json(request: Request) -> Response:
    return Response(_health(request))


@get("/about", guards=[permission("about.view")], name="about")
async def about(request: Request) -> Response:
    services = request.app.state.services
    return render(request.app.state.templates, request, "about.html", tls=services.tls.info(),
                  licences=services.licences, ca_path=str(services.tls.ca_pem_path),
                  integrity=services.integrity, development_build=services.updates.development_build)


ROUTES = [dashboard, dashboard_health, dashboard_health_json, about]
