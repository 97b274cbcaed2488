"""Settings -> TLS certificates (TLS-2, TLS-4): what is served, import, rollback, regenerate.

Thin: `tls.importer` validates, `TLSManager` swaps without dropping service. Every
change needs a fresh step-up (AUTH-8, `recent_auth`, shared with the accounts pages):
a stale session is sent to /reauth and back. Every change and every refused import is
audited (CRT codes) right after the file change (files cannot join a DB transaction):
changes by `TLSManager` itself, refused imports here.
"""

from __future__ import annotations

import asyncio
import socket
import time

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile

from appliance.audit.events import Event
from appliance.audit.models import Outcome
from appliance.errors import OutpostError
from appliance.tls import EXPIRY_WARNING_DAYS, importer
from appliance.web.deps import actor, principal, services
from appliance.web.guards import permission
from appliance.web.ui.forms import on_page, page, text

TLS = permission("settings.tls")


def _view(request: Request, *, message: str = "", ok: str = "", warnings: list[str] | None = None,
          status: int = 200) -> Response:
    svc = services(request)
    info = svc.tls.info()
    days = (info.leaf_not_after - svc.clock.now()) / 86400
    return page(request, "certificates/index.html", status=status, info=info, days_left=days,
                warn=days < EXPIRY_WARNING_DAYS, message=message, ok=ok, warnings=warnings or [],
                step_up=svc.auth.stepup.has_recent_auth(principal(request)),
                hostname=importer.configured_hostname(svc.config.web.hostname, socket.gethostname()))


@get("/settings/certificates", guards=[TLS], name="certificates")
async def certificates_page(request: Request) -> Response:
    return _view(request)


async def _upload(form, name: str) -> bytes | None:
    value = form.get(name)
    if isinstance(value, UploadFile):
        data = await value.read()
        return data or None
    return None


async def _audit(request: Request, event: Event, *, outcome: Outcome = "success", details: dict) -> None:
    """A refused import changed nothing; TLSManager records the changes it makes itself."""
    svc = services(request)
    await svc.audit.record_alone(event, actor=actor(request), outcome=outcome,
                                 target=svc.tls.info().leaf_subject[:200], details=details)


@post("/settings/certificates/import", guards=[TLS], name="certificates_import", opt=on_page("/settings/certificates"))
async def import_certificate(request: Request) -> Response:
    svc = services(request)
    svc.auth.stepup.require_recent_auth(principal(request))  # step-up: sends the browser to /reauth
    form = await request.form()
    hostname = importer.configured_hostname(svc.config.web.hostname, socket.gethostname())
    try:
        password = text(form, "password").encode() or None
        p12, cert, key = await _upload(form, "p12"), await _upload(form, "cert"), await _upload(form, "key")
        if p12 is not None and cert is None:
            bundle = await svc.key_pool.run(importer.from_pkcs12, p12, password, hostname=hostname, now=time.time())
        elif cert is not None and p12 is None:
            bundle = await svc.key_pool.run(importer.from_pem, cert, key, password, hostname=hostname, now=time.time())
        else:
            raise importer.CertificateImportError("Choose either a PEM certificate file (with its key) "
                                                  "or a PKCS#12 file.")
        events = await asyncio.to_thread(svc.tls.install_customer, bundle, actor=actor(request), via="ui")
    except OutpostError as exc:
        await _audit(request, Event.TLS_CERT_IMPORT_REFUSED, outcome="failure", details={"reason": exc.message[:300]})
        return _view(request, message=f"Not imported: {exc.message}", status=400)
    if not events:
        return _view(request, ok="This certificate is already in use; nothing changed. Rollback still restores the "
                                 "certificate that was in use before it.", warnings=bundle.warnings)
    return _view(request, ok="The certificate is installed; new connections use it now. The previous one is kept for "
                             "rollback.", warnings=bundle.warnings)


@post("/settings/certificates/rollback", guards=[TLS], name="certificates_rollback",
      opt=on_page("/settings/certificates"))
async def rollback(request: Request) -> Response:
    svc = services(request)
    svc.auth.stepup.require_recent_auth(principal(request))
    try:
        await asyncio.to_thread(svc.tls.rollback, actor=actor(request), via="ui")  # audited by the manager
    except OutpostError as exc:
        return _view(request, message=f"Not rolled back: {exc.message}", status=409)
    return _view(request, ok="Rolled back: new connections use the previous certificate.")


@post("/settings/certificates/regenerate", guards=[TLS], name="certificates_regenerate",
      opt=on_page("/settings/certificates"))
async def regenerate(request: Request) -> Response:
    svc = services(request)
    svc.auth.stepup.require_recent_auth(principal(request))
    try:
        await asyncio.to_thread(svc.tls.regenerate, actor=actor(request), via="ui")  # audited by the manager
    except OutpostError as exc:
        return _view(request, message=f"Not regenerated: {exc.message}", status=500)
    return _view(request, ok="A new local certificate is served (issued by the appliance's own CA).")


ROUTES = [certificates_page, import_certificate, rollback, regenerate]
