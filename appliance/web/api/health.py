"""/healthz (PLAT-6): unauthenticated, minimal: says ok or not ok and nothing else.

/api/v1/health: the appliance's own health figures (health.read, API key)."""

from __future__ import annotations

from litestar import Request, Response, get

from appliance.system.health import Health
from appliance.web.deps import services
from appliance.web.guards import permission, public


@get("/healthz", guards=[public], name="healthz", include_in_schema=False)
async def healthz(request: Request) -> Response:
    ok = await services(request).healthy()
    return Response({"status": "ok" if ok else "not ok"}, status_code=200 if ok else 503)


@get("/api/v1/health", guards=[permission("health.read")], name="api_health", tags=["health"],
     summary="Appliance health", description="CPU, memory, disk, database size, certificate expiry, uptime, version.")
async def api_health(request: Request) -> Health:
    return services(request).health()


ROUTES = [healthz, api_health]
