"""/healthz (PLAT-6): unauthenticated, minimal: says ok or not ok and nothing else."""

from __future__ import annotations

from litestar import Request, Response, get

from appliance.web.guards import public


@get("/healthz", guards=[public], name="healthz")
async def healthz(request: Request) -> Response:
    ok = await request.app.state.services.healthy()
    return Response({"status": "ok" if ok else "not ok"}, status_code=200 if ok else 503)


ROUTES = [healthz]
