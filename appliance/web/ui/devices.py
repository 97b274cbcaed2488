"""Device, credential, CSV import and host-key review pages (DEV-1..4).

Handlers are thin: read the form, call DeviceService, re-render with inline errors.
Secrets typed into forms are never rendered back into a page.
"""

from __future__ import annotations

from litestar import Request, Response, get, post

from appliance.auth.permissions import allowed
from appliance.devices import csvimport
from appliance.errors import ConflictError, ValidationError
from appliance.web.deps import actor, principal, services
from appliance.web.guards import permission
from appliance.web.ui import deviceforms
from appliance.web.ui.forms import fields, on_page, page, redirect

MAX_FIELD = 40_000  # a private key fits; anything larger is refused before any work
# Notices come from fixed texts keyed by a code in the query string (no reflected free text).
_NOTICES = {"deleted": "Device deleted.", "cred_saved": "Credential saved.", "cred_deleted": "Credential deleted."}


def _can_approve(request: Request) -> bool:
    """May this user approve credential bindings (devices/binding.py)? Admins only."""
    return allowed(principal(request).role, "devices.approve")


def _rights(request: Request) -> dict[str, bool]:
    """What the pages offer this role (buttons and links; the routes check again)."""
    role = principal(request).role
    return {"can_manage": allowed(role, "devices.manage"), "can_credentials": allowed(role, "credentials.manage"),
            "can_approve": allowed(role, "devices.approve")}


async def _form(request: Request) -> dict[str, str]:
    return await fields(request, limit=MAX_FIELD)


async def _statuses(request: Request, devices) -> dict | None:
    """Probe status per device id, if the probe registered a provider (see DeviceService.status_provider).

    None for a role without probe.view (the auditor): probe status and latency are probe
    data, and the page then leaves its Status column out (ACL-1 inside pages)."""
    if not allowed(principal(request).role, "probe.view"):
        return None
    provider = getattr(services(request).devices, "status_provider", None)
    if provider is None or not devices:
        return {}
    try:
        return await provider([d.id for d in devices])
    except Exception:  # the inventory stays usable when the status source fails
        return {}


# ---- devices -----------------------------------------------------------------------

@get("/devices", guards=[permission("devices.view")], name="devices_list")
async def devices_list(request: Request) -> Response:
    svc = services(request).devices
    search = request.query_params.get("q", "")[:100]
    tag = request.query_params.get("tag", "")[:32]
    devices = await svc.list_devices(search=search, tag=tag)
    return page(request, "devices/list.html", **_rights(request), devices=devices, search=search, tag=tag,
                tags=await svc.list_tags(), statuses=await _statuses(request, devices),
                notice=_NOTICES.get(request.query_params.get("notice", ""), ""))


async def _device_form(request: Request, *, device=None, values=None, errors=None, message="", status=200):
    return page(request, "devices/form.html", **_rights(request), status=status, device=device,
                values=deviceforms.device_form_values(device) if values is None else values, errors=errors or {},
                message=message, credentials=await services(request).devices.list_credentials())


@get("/devices/new", guards=[permission("devices.manage")], name="devices_new")
async def devices_new(request: Request) -> Response:
    return await _device_form(request)


@post("/devices/new", guards=[permission("devices.manage")], name="devices_create", opt=on_page("/devices/new"))
async def devices_create(request: Request) -> Response:
    form = await _form(request)
    data, errors = deviceforms.device_create(form)
    if not errors:
        try:
            device_id = await services(request).devices.create_device(data, actor=actor(request),
                                                                      can_approve=_can_approve(request))
        except ValidationError as exc:
            errors = exc.details or {"name": exc.message}
        else:
            return redirect(f"/devices/{device_id}?notice=added")
    return await _device_form(request, values=deviceforms.echo(form), errors=errors, status=400,
                              message="The device was not added: please correct the highlighted fields.")


@get("/devices/{device_id:int}", guards=[permission("devices.view")], name="devices_detail")
async def devices_detail(request: Request, device_id: int) -> Response:
    svc = services(request).devices
    device = await svc.require_device(device_id)
    credential = await svc.get_credential(device.credential_id) if device.credential_id else None
    notice = {"added": "Device added.", "saved": "Changes saved.", "repinned": "The new host key is now trusted.",
              "approved": "Credential binding approved: the probe now logs in to this device.",
              "forgotten": "The pin was removed; the next contact pins the key again."}.get(
        request.query_params.get("notice", ""), "")
    return page(request, "devices/detail.html", **_rights(request), device=device, credential=credential, notice=notice,
                 statuses=await _statuses(request, [device]), probe_panel=_has_probe_panel(request))


def _has_probe_panel(request: Request) -> bool:
    """True once the probe registered GET /devices/{id}/probe-panel (and the role may see it:
    probe.view); otherwise the page shows a placeholder."""
    return allowed(principal(request).role, "probe.view") and any(
        route.path.startswith("/devices/{") and route.path.endswith("/probe-panel") for route in request.app.routes)


@get("/devices/{device_id:int}/edit", guards=[permission("devices.manage")], name="devices_edit")
async def devices_edit(request: Request, device_id: int) -> Response:
    return await _device_form(request, device=await services(request).devices.require_device(device_id))


@post("/devices/{device_id:int}/edit", guards=[permission("devices.manage")], name="devices_update",
      opt=on_page("/devices/{device_id}/edit"))
async def devices_update(request: Request, device_id: int) -> Response:
    svc = services(request).devices
    device = await svc.require_device(device_id)
    form = await _form(request)
    change, errors = deviceforms.device_update(form)
    if not errors:
        try:
            await svc.update_device(device_id, change, actor=actor(request), can_approve=_can_approve(request))
        except ValidationError as exc:
            errors = exc.details or {"name": exc.message}
        else:
            return redirect(f"/devices/{device_id}?notice=saved")
    return await _device_form(request, device=device, values=deviceforms.echo(form), errors=errors, status=400,
                              message="Nothing was saved: please correct the highlighted fields.")


@get("/devices/{device_id:int}/delete", guards=[permission("devices.manage")], name="devices_delete_confirm")
async def devices_delete_confirm(request: Request, device_id: int) -> Response:
    device = await services(request).devices.require_device(device_id)
    return page(request, "devices/confirm_delete.html", **_rights(request), device=device)


@post("/devices/{device_id:int}/delete", guards=[permission("devices.manage")], name="devices_delete",
      opt=on_page("/devices/{device_id}/delete"))
async def devices_delete(request: Request, device_id: int) -> Response:
    svc = services(request).devices
    await svc.delete_device(device_id, actor=actor(request))
    return redirect("/devices?notice=deleted")


# ---- host-key review ---------------------------------------------------------------

@get("/devices/{device_id:int}/host-key", guards=[permission("devices.view")], name="devices_host_key")
async def host_key_page(request: Request, device_id: int) -> Response:
    device = await services(request).devices.require_device(device_id)
    return page(request, "devices/host_key.html", **_rights(request), device=device, message="")


@post("/devices/{device_id:int}/host-key/trust", guards=[permission("devices.manage")], name="devices_host_key_trust",
      opt=on_page("/devices/{device_id}/host-key"))
async def host_key_trust(request: Request, device_id: int) -> Response:
    svc = services(request).devices
    form = await _form(request)
    try:
        await svc.trust_presented_key(device_id, form.get("fingerprint", "").strip(), actor=actor(request),
                                      can_approve=_can_approve(request))
    except ConflictError as exc:
        return page(request, "devices/host_key.html", **_rights(request), status=409,
                    device=await svc.require_device(device_id), message=exc.message)
    return redirect(f"/devices/{device_id}?notice=repinned")


@post("/devices/{device_id:int}/host-key/forget", guards=[permission("devices.manage")],
      name="devices_host_key_forget", opt=on_page("/devices/{device_id}/host-key"))
async def host_key_forget(request: Request, device_id: int) -> Response:
    await services(request).devices.forget_host_key(device_id, actor=actor(request), can_approve=_can_approve(request))
    return redirect(f"/devices/{device_id}?notice=forgotten")


@post("/devices/{device_id:int}/binding/approve", guards=[permission("devices.approve")],
      name="devices_binding_approve", opt=on_page("/devices/{device_id}"))
async def binding_approve(request: Request, device_id: int) -> Response:
    """An admin approves the credential binding shown on the device page (address, port, credential)."""
    svc = services(request).devices
    form = await _form(request)
    port, credential = form.get("port", ""), form.get("credential_id", "")
    if not port.isdigit() or not (credential.isdigit() or credential == ""):
        raise ValidationError("The approval form is incomplete; reload the device page.", details={"port": "Reload."})
    try:
        await svc.approve_binding(device_id, address=form.get("address", ""), port=int(port),
                                  credential_id=int(credential) if credential else None, actor=actor(request))
    except ConflictError as exc:
        device = await svc.require_device(device_id)
        cred = await svc.get_credential(device.credential_id) if device.credential_id else None
        return page(request, "devices/detail.html", **_rights(request), status=409, device=device, credential=cred,
                    notice=exc.message, statuses=await _statuses(request, [device]),
                    probe_panel=_has_probe_panel(request))
    return redirect(f"/devices/{device_id}?notice=approved")


# ---- CSV import --------------------------------------------------------------------

@get("/devices/import", guards=[permission("devices.manage")], name="devices_import_page")
async def import_page(request: Request) -> Response:
    return page(request, "devices/import.html", **_rights(request), result=None, columns=csvimport.COLUMNS,
                 max_kib=csvimport.MAX_BYTES // 1024, max_rows=csvimport.MAX_ROWS)


@post("/devices/import", guards=[permission("devices.manage")], name="devices_import", opt=on_page("/devices/import"))
async def import_submit(request: Request) -> Response:
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        data = b""
    else:
        data = await upload.read(csvimport.MAX_BYTES + 1)
    result = await services(request).devices.import_csv(data, actor=actor(request), can_approve=_can_approve(request))
    return page(request, "devices/import.html", **_rights(request), status=200 if result.ok else 400, result=result,
                 columns=csvimport.COLUMNS, max_kib=csvimport.MAX_BYTES // 1024, max_rows=csvimport.MAX_ROWS)


# ---- credentials -------------------------------------------------------------------

@get("/credentials", guards=[permission("credentials.manage")], name="credentials_list")
async def credentials_list(request: Request) -> Response:
    credentials = await services(request).devices.list_credentials()
    return page(request, "devices/credentials.html", **_rights(request), credentials=credentials,
                notice=_NOTICES.get(request.query_params.get("notice", ""), ""), message="")


@get("/credentials/new", guards=[permission("credentials.manage")], name="credentials_new")
async def credentials_new(request: Request) -> Response:
    return page(request, "devices/credential_form.html", **_rights(request), credential=None,
                values={"kind": "password"}, errors={}, message="")


@post("/credentials/new", guards=[permission("credentials.manage")], name="credentials_create",
      opt=on_page("/credentials/new"))
async def credentials_create(request: Request) -> Response:
    form = await _form(request)
    try:
        await services(request).devices.create_credential(deviceforms.credential_create(form), actor=actor(request))
    except ValidationError as exc:
        return page(request, "devices/credential_form.html", **_rights(request), status=400, credential=None,
                     values=deviceforms.credential_form_values(form), errors=exc.details, message=exc.message)
    return redirect("/credentials?notice=cred_saved")


@get("/credentials/{credential_id:int}/edit", guards=[permission("credentials.manage")], name="credentials_edit")
async def credentials_edit(request: Request, credential_id: int) -> Response:
    cred = await services(request).devices.require_credential(credential_id)
    return page(request, "devices/credential_form.html", **_rights(request), credential=cred,
                 values={"name": cred.name, "username": cred.username, "kind": cred.kind}, errors={}, message="")


@post("/credentials/{credential_id:int}/edit", guards=[permission("credentials.manage")], name="credentials_update",
      opt=on_page("/credentials/{credential_id}/edit"))
async def credentials_update(request: Request, credential_id: int) -> Response:
    svc = services(request).devices
    cred = await svc.require_credential(credential_id)
    form = await _form(request)
    try:
        await svc.update_credential(credential_id, deviceforms.credential_update(form), actor=actor(request))
    except ValidationError as exc:
        return page(request, "devices/credential_form.html", **_rights(request), status=400, credential=cred,
                     values=deviceforms.credential_form_values(form), errors=exc.details, message=exc.message)
    return redirect("/credentials?notice=cred_saved")


@post("/credentials/{credential_id:int}/delete", guards=[permission("credentials.manage")],
      name="credentials_delete", opt=on_page("/credentials"))
async def credentials_delete(request: Request, credential_id: int) -> Response:
    svc = services(request).devices
    try:
        await svc.delete_credential(credential_id, actor=actor(request))
    except ConflictError as exc:
        return page(request, "devices/credentials.html", **_rights(request), status=409,
                    credentials=await svc.list_credentials(), notice="", message=exc.message)
    return redirect("/credentials?notice=cred_deleted")


ROUTES = [devices_list, devices_new, devices_create, import_page, import_submit, devices_detail, devices_edit,
          devices_update, devices_delete_confirm, devices_delete, host_key_page, host_key_trust, host_key_forget,
          binding_approve, credentials_list,
          credentials_new, credentials_create, credentials_edit, credentials_update, credentials_delete]
