"""Updates page (UPD-1..4): installed / previous / pending versions, verify or apply a bundle
from the USB stick, roll back, and re-run the integrity self-check.

Thin: the updates capability does the work (in a worker thread: copying and hashing a
bundle takes seconds). Applying and rolling back need a fresh step-up (AUTH-8).
"""

from __future__ import annotations

import asyncio

from litestar import Request, Response, get, post

from appliance.errors import OutpostError
from appliance.web.deps import actor, principal, services
from appliance.web.guards import permission
from appliance.web.ui.forms import on_page, page, redirect, text

MANAGE = permission("updates.manage")


def _view(request: Request, *, message: str = "", ok: str = "", errors: dict | None = None, status: int = 200,
          chosen: str = "") -> Response:
    svc = services(request)
    updater = svc.updates.updater(actor(request))
    return page(request, "updates/index.html", status=status, st=updater.status(), message=message, ok=ok,
                errors=errors or {}, bundles=svc.updates.media_bundles(), media_dir=svc.config.updates.media_dir,
                development_build=svc.updates.development_build, integrity=svc.integrity, chosen=chosen,
                restarting=updater.layout.pid_file.exists())


@get("/updates", guards=[MANAGE], name="updates")
async def updates_page(request: Request) -> Response:
    return _view(request)


async def _chosen(request: Request) -> str:
    form = await request.form()
    return text(form, "file").strip()


@post("/updates/verify", guards=[MANAGE], name="updates_verify", opt=on_page("/updates"))
async def verify(request: Request) -> Response:
    svc = services(request)
    chosen = ""
    try:
        chosen = await _chosen(request)
        path = svc.updates.media_path(chosen)
        verified = await asyncio.to_thread(svc.updates.updater(actor(request)).verify_only, path)
    except OutpostError as exc:
        return _view(request, message=f"Refused: {exc.message}", errors=exc.details, status=400, chosen=chosen)
    m = verified.manifest
    return _view(request, ok=f"{chosen} is a valid, signed Outpost {m.version} bundle (upgrades from {m.min_version} "
                             "or later). Nothing was installed.", chosen=chosen)


@post("/updates/apply", guards=[MANAGE], name="updates_apply", opt=on_page("/updates"))
async def apply(request: Request) -> Response:
    svc = services(request)
    svc.auth.stepup.require_recent_auth(principal(request))  # step-up (AUTH-8): sends the browser to /reauth
    chosen = ""
    try:
        chosen = await _chosen(request)
        path = svc.updates.media_path(chosen)
        updater = svc.updates.updater(actor(request))
        st = await asyncio.to_thread(updater.apply, path, svc.db.snapshot, False)
    except OutpostError as exc:
        return _view(request, message=f"Refused: {exc.message}", errors=exc.details, status=400, chosen=chosen)
    if st.phase == "switched" and not updater.layout.pid_file.exists():
        note = "Restart the appliance service to start it; the health gate runs then."
    else:
        note = ("The appliance restarts now; reload this page in a minute. If the new version does not come up "
                "it is rolled back automatically.")
    return _view(request, ok=f"Version {st.pending or st.installed} is installed and selected. {note}")


@post("/updates/rollback", guards=[MANAGE], name="updates_rollback", opt=on_page("/updates"))
async def rollback(request: Request) -> Response:
    svc = services(request)
    svc.auth.stepup.require_recent_auth(principal(request))
    try:
        updater = svc.updates.updater(actor(request))
        st = await asyncio.to_thread(updater.request_rollback)
        signalled = updater.signal_launcher()
    except OutpostError as exc:
        return _view(request, message=f"Refused: {exc.message}", status=409)
    note = "The appliance restarts now." if signalled else "Restart the appliance service to complete it."
    return _view(request, ok=f"Rolling back to {st.pending}. {note}")


@post("/about/integrity", guards=[MANAGE], name="integrity_check", opt=on_page("/about"))
async def integrity_check(request: Request) -> Response:
    svc = services(request)
    await asyncio.to_thread(svc.check_integrity, actor(request))
    return redirect("/about#integrity")


ROUTES = [updates_page, verify, apply, rollback, integrity_check]
