"""Device, credential, CSV import and host-key review pages (DEV-1..4).

Handlers are thin: read the form, call DeviceService, re-render with inline errors.
Secrets typed into forms are never rendered back into a page.
"""

from __future__ import annotations

from litestar import Request, Response, get, post

from appliance.audit.models import Actor
from appliance.auth.permissions import allowed
from appliance.devices import csvimport
from appliance.devices.models import CredentialInput
from appliance.errors import ConflictError, ValidationError
from appliance.web.guards import permission, principal_of
from appliance.web.render import render
from appliance.web.security import CLIENT
from appliance.web.ui.forms import on_page

_MAX_FIELD = 40_000  # a private key fits; anything larger is refused before any work
_DEVICE_FIELDS = ("name", "address", "port", "tags", "poll_interval", "notes", "host_key", "credential_id")
_NEW_CRED = "new"
# Notices come from fixed texts keyed by a code in the query string (no reflected free text).
_NOTICES = {"deleted": "Device deleted.", "cred_saved": "Credential saved.", "cred_deleted": "Credential deleted."}


def _svc(request: Request):
    return request.app.state.services.devices


def _actor(request: Request) -> Actor:
    return Actor(type="user", name=principal_of(request).username, source=request.scope.get(CLIENT, "unknown"))


def _can_approve(request: Request) -> bool:
    """May this user approve credential bindings (devices/binding.py)? Admins only."""
    return allowed(principal_of(request).role, "devices.approve")


def _redirect(location: str) -> Response:
    return Response(b"", status_code=303, headers={"Location": location})


def _page(request: Request, template: str, status: int = 200, **ctx) -> Response:
    role = principal_of(request).role
    return render(request.app.state.templates, request, template, status=status, **ctx,
                  can_manage=allowed(role, "devices.manage"), can_credentials=allowed(role, "credentials.manage"),
                  can_approve=allowed(role, "devices.approve"))


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    out = {}
    for key in form:
        value = form.get(key)
        if isinstance(value, str):
            if len(value) > _MAX_FIELD:
                raise ValidationError("A field is far too long.", details={key: "Far too long."})
            out[key] = value
    return out


async def _statuses(request: Request, devices) -> dict | None:
    """Probe status per device id, if the probe registered a provider (see DeviceService.status_provider).

    None for a role without probe.view (the auditor): probe status and latency are probe
    data, and the page then leaves its Status column out (ACL-1 inside pages)."""
    if not allowed(principal_of(request).role, "probe.view"):
        return None
    provider = getattr(_svc(request), "status_provider", None)
    if provider is None or not devices:
        return {}
    try:
        return await provider([d.id for d in devices])
    except Exception:  # the inventory stays usable when the status source fails
        return {}


# ---- devices -----------------------------------------------------------------------

@get("/devices", guards=[permission("devices.view")], name="devices_list")
async def devices_list(request: Request) -> Response:
    svc = _svc(request)
    search = request.query_params.get("q", "")[:100]
    tag = request.query_params.get("tag", "")[:32]
    devices = await svc.list_devices(search=search, tag=tag)
    return _page(request, "devices/list.html", devices=devices, search=search, tag=tag, tags=await svc.list_tags(),
                 statuses=await _statuses(request, devices), notice=_NOTICES.get(request.query_params.get("notice", ""), ""))


async def _device_form_page(request: Request, *, device=None, values=None, errors=None, message="", status=200):
    svc = _svc(request)
    if values is None:
        values = {"port": "22", "poll_interval": "60", "enabled": "on", "credential_id": ""}
        if device is not None:
            values = {"name": device.name, "address": device.address, "port": str(device.port),
                      "tags": ", ".join(device.tags), "poll_interval": str(device.poll_interval),
                      "notes": device.notes, "enabled": "on" if device.enabled else "",
                      "legacy_algorithms": "on" if device.legacy_algorithms else "",
                      "credential_id": str(device.credential_id or ""),
                      "host_key": device.preset_fingerprint or ""}
    return _page(request, "devices/form.html", status=status, device=device, values=values, errors=errors or {},
                 message=message, credentials=await svc.list_credentials())


def _split(form: dict[str, str]) -> tuple[dict, CredentialInput | None]:
    """Device fields, and a new credential if the operator chose "new credential" and typed one."""
    fields = {k: form.get(k, "") for k in _DEVICE_FIELDS}
    fields["enabled"] = "yes" if form.get("enabled") else "no"  # an unticked checkbox is simply absent
    fields["legacy_algorithms"] = "yes" if form.get("legacy_algorithms") else "no"
    new = None
    if fields["credential_id"] == _NEW_CRED:
        fields["credential_id"] = ""
        kind = "key" if form.get("new_kind") == "key" else "password"
        # chosen "new": an empty one gets inline errors rather than silently no credential
        new = CredentialInput(name=form.get("name", "").strip() or "device", username=form.get("new_username", ""),
                              kind=kind, password=form.get("new_password") if kind == "password" else None,
                              private_key=form.get("new_private_key") if kind == "key" else None,
                              passphrase=form.get("new_passphrase") if kind == "key" else None)
    return fields, new


def _safe_values(form: dict[str, str]) -> dict[str, str]:
    """What may be echoed back into the form: never a password, key or passphrase."""
    return {k: v for k, v in form.items() if k not in ("new_password", "new_private_key", "new_passphrase", "_csrf")}


@get("/devices/new", guards=[permission("devices.manage")], name="devices_new")
async def devices_new(request: Request) -> Response:
    return await _device_form_page(request)


@post("/devices/new", guards=[permission("devices.manage")], name="devices_create", opt=on_page("/devices/new"))
async def devices_create(request: Request) -> Response:
    svc = _svc(request)
    form = await _form(request)
    fields, new_cred = _split(form)
    data, errors = svc.parse_device(fields)
    if not errors:
        try:
            device_id = await svc.create_device(data, actor=_actor(request), new_credential=new_cred,
                                                can_approve=_can_approve(request))
        except ValidationError as exc:
            errors = exc.details or {"name": exc.message}
        else:
            return _redirect(f"/devices/{device_id}?notice=added")
    return await _device_form_page(request, values=_safe_values(form), errors=errors, status=400,
                                   message="The device was not added: please correct the highlighted fields.")


@get("/devices/{device_id:int}", guards=[permission("devices.view")], name="devices_detail")
async def devices_detail(request: Request, device_id: int) -> Response:
    svc = _svc(request)
    device = await svc.require_device(device_id)
    credential = await svc.get_credential(device.credential_id) if device.credential_id else None
    notice = {"added": "Device added.", "saved": "Changes saved.", "repinned": "The new host key is now trusted.",
              "approved": "Credential binding approved: the probe now logs in to this device.",
              "forgotten": "The pin was removed; the next contact pins the key again."}.get(
        request.query_params.get("notice", ""), "")
    return _page(request, "devices/detail.html", device=device, credential=credential, notice=notice,
                 statuses=await _statuses(request, [device]), probe_panel=_has_probe_panel(request))


def _has_probe_panel(request: Request) -> bool:
    """True once the probe registered GET /devices/{id}/probe-panel (and the role may see it:
    probe.view); otherwise the page shows a placeholder."""
    return allowed(principal_of(request).role, "probe.view") and any(route.path.startswith("/devices/{") and route.path.endswith("/probe-panel")
               for route in request.app.routes)


@get("/devices/{device_id:int}/edit", guards=[permission("devices.manage")], name="devices_edit")
async def devices_edit(request: Request, device_id: int) -> Response:
    return await _device_form_page(request, device=await _svc(request).require_device(device_id))


@post("/devices/{device_id:int}/edit", guards=[permission("devices.manage")], name="devices_update",
      opt=on_page("/devices/{device_id}/edit"))
async def devices_update(request: Request, device_id: int) -> Response:
    svc = _svc(request)
    device = await svc.require_device(device_id)
    form = await _form(request)
    fields, new_cred = _split(form)
    data, errors = svc.parse_device(fields)
    if not errors:
        try:
            await svc.update_device(device_id, data, actor=_actor(request), new_credential=new_cred,
                                    can_approve=_can_approve(request))
        except ValidationError as exc:
            errors = exc.details or {"name": exc.message}
        else:
            return _redirect(f"/devices/{device_id}?notice=saved")
    return await _device_form_page(request, device=device, values=_safe_values(form), errors=errors, status=400,
                                   message="Nothing was saved: please correct the highlighted fields.")


@get("/devices/{device_id:int}/delete", guards=[permission("devices.manage")], name="devices_delete_confirm")
async def devices_delete_confirm(request: Request, device_id: int) -> Response:
    return _page(request, "devices/confirm_delete.html", device=await _svc(request).require_device(device_id))


@post("/devices/{device_id:int}/delete", guards=[permission("devices.manage")], name="devices_delete",
      opt=on_page("/devices/{device_id}/delete"))
async def devices_delete(request: Request, device_id: int) -> Response:
    svc = _svc(request)
    await svc.delete_device(device_id, actor=_actor(request))
    return _redirect("/devices?notice=deleted")


# ---- host-key review ---------------------------------------------------------------

@get("/devices/{device_id:int}/host-key", guards=[permission("devices.view")], name="devices_host_key")
async def host_key_page(request: Request, device_id: int) -> Response:
    device = await _svc(request).require_device(device_id)
    return _page(request, "devices/host_key.html", device=device, message="")


@post("/devices/{device_id:int}/host-key/trust", guards=[permission("devices.manage")], name="devices_host_key_trust",
      opt=on_page("/devices/{device_id}/host-key"))
async def host_key_trust(request: Request, device_id: int) -> Response:
    svc = _svc(request)
    form = await _form(request)
    try:
        await svc.trust_presented_key(device_id, form.get("fingerprint", "").strip(), actor=_actor(request),
                                      can_approve=_can_approve(request))
    except ConflictError as exc:
        return _page(request, "devices/host_key.html", status=409, device=await svc.require_device(device_id),
                     message=exc.message)
    return _redirect(f"/devices/{device_id}?notice=repinned")


@post("/devices/{device_id:int}/host-key/forget", guards=[permission("devices.manage")],
      name="devices_host_key_forget", opt=on_page("/devices/{device_id}/host-key"))
async def host_key_forget(request: Request, device_id: int) -> Response:
    await _svc(request).forget_host_key(device_id, actor=_actor(request), can_approve=_can_approve(request))
    return _redirect(f"/devices/{device_id}?notice=forgotten")


@post("/devices/{device_id:int}/binding/approve", guards=[permission("devices.approve")],
      name="devices_binding_approve", opt=on_page("/devices/{device_id}"))
async def binding_approve(request: Request, device_id: int) -> Response:
    """An admin approves the credential binding shown on the device page (address, port, credential)."""
    svc = _svc(request)
    form = await _form(request)
    port, credential = form.get("port", ""), form.get("credential_id", "")
    if not port.isdigit() or not (credential.isdigit() or credential == ""):
        raise ValidationError("The approval form is incomplete; reload the device page.", details={"port": "Reload."})
    try:
        await svc.approve_binding(device_id, address=form.get("address", ""), port=int(port),
                                  credential_id=int(credential) if credential else None, actor=_actor(request))
    except ConflictError as exc:
        device = await svc.require_device(device_id)
        cred = await svc.get_credential(device.credential_id) if device.credential_id else None
        return _page(request, "devices/detail.html", status=409, device=device, credential=cred, notice=exc.message,
                     statuses=await _statuses(request, [device]), probe_panel=_has_probe_panel(request))
    return _redirect(f"/devices/{device_id}?notice=approved")


# ---- CSV import --------------------------------------------------------------------

@get("/devices/import", guards=[permission("devices.manage")], name="devices_import_page")
async def import_page(request: Request) -> Response:
    return _page(request, "devices/import.html", result=None, columns=csvimport.COLUMNS,
                 max_kib=csvimport.MAX_BYTES // 1024, max_rows=csvimport.MAX_ROWS)


@post("/devices/import", guards=[permission("devices.manage")], name="devices_import", opt=on_page("/devices/import"))
async def import_submit(request: Request) -> Response:
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        data = b""
    else:
        data = await upload.read(csvimport.MAX_BYTES + 1)
    result = await _svc(request).import_csv(data, actor=_actor(request), can_approve=_can_approve(request))
    return _page(request, "devices/import.html", status=200 if result.ok else 400, result=result,
                 columns=csvimport.COLUMNS, max_kib=csvimport.MAX_BYTES // 1024, max_rows=csvimport.MAX_ROWS)


# ---- credentials -------------------------------------------------------------------

@get("/credentials", guards=[permission("credentials.manage")], name="credentials_list")
async def credentials_list(request: Request) -> Response:
    return _page(request, "devices/credentials.html", credentials=await _svc(request).list_credentials(),
                 notice=_NOTICES.get(request.query_params.get("notice", ""), ""), message="")


def _credential_input(form: dict[str, str], base=None) -> CredentialInput:
    kind = "key" if form.get("kind") == "key" else "password"
    return CredentialInput(name=form.get("name", ""), username=form.get("username", ""), kind=kind,
                           password=form.get("password") or None if kind == "password" else None,
                           private_key=form.get("private_key") or None if kind == "key" else None,
                           passphrase=form.get("passphrase") or None if kind == "key" else None)


@get("/credentials/new", guards=[permission("credentials.manage")], name="credentials_new")
async def credentials_new(request: Request) -> Response:
    return _page(request, "devices/credential_form.html", credential=None, values={"kind": "password"}, errors={},
                 message="")


@post("/credentials/new", guards=[permission("credentials.manage")], name="credentials_create",
      opt=on_page("/credentials/new"))
async def credentials_create(request: Request) -> Response:
    form = await _form(request)
    try:
        await _svc(request).create_credential(_credential_input(form), actor=_actor(request))
    except ValidationError as exc:
        return _page(request, "devices/credential_form.html", status=400, credential=None,
                     values=_cred_values(form), errors=exc.details, message=exc.message)
    return _redirect("/credentials?notice=cred_saved")


def _cred_values(form: dict[str, str]) -> dict[str, str]:
    return {k: form.get(k, "") for k in ("name", "username", "kind")}


@get("/credentials/{credential_id:int}/edit", guards=[permission("credentials.manage")], name="credentials_edit")
async def credentials_edit(request: Request, credential_id: int) -> Response:
    cred = await _svc(request).require_credential(credential_id)
    return _page(request, "devices/credential_form.html", credential=cred,
                 values={"name": cred.name, "username": cred.username, "kind": cred.kind}, errors={}, message="")


@post("/credentials/{credential_id:int}/edit", guards=[permission("credentials.manage")], name="credentials_update",
      opt=on_page("/credentials/{credential_id}/edit"))
async def credentials_update(request: Request, credential_id: int) -> Response:
    svc = _svc(request)
    cred = await svc.require_credential(credential_id)
    form = await _form(request)
    try:
        await svc.update_credential(credential_id, _credential_input(form), actor=_actor(request))
    except ValidationError as exc:
        return _page(request, "devices/credential_form.html", status=400, credential=cred,
                     values=_cred_values(form), errors=exc.details, message=exc.message)
    return _redirect("/credentials?notice=cred_saved")


@post("/credentials/{credential_id:int}/delete", guards=[permission("credentials.manage")],
      name="credentials_delete", opt=on_page("/credentials"))
async def credentials_delete(request: Request, credential_id: int) -> Response:
    svc = _svc(request)
    try:
        await svc.delete_credential(credential_id, actor=_actor(request))
    except ConflictError as exc:
        return _page(request, "devices/credentials.html", status=409, credentials=await svc.list_credentials(),
                     notice="", message=exc.message)
    return _redirect("/credentials?notice=cred_deleted")


ROUTES = [devices_list, devices_new, devices_create, import_page, import_submit, devices_detail, devices_edit,
          devices_update, devices_delete_confirm, devices_delete, host_key_page, host_key_trust, host_key_forget,
          binding_approve, credentials_list,
          credentials_new, credentials_create, credentials_edit, credentials_update, credentials_delete]
