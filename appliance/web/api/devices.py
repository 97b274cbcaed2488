"""/api/v1/devices and /api/v1/credentials (DEV-1..3): inventory CRUD, CSV import, host-key review.

Bodies decode straight into the devices capability's inputs (devices/models.py: DeviceCreate,
DeviceUpdate, CredentialCreate, CredentialUpdate); PATCH sends only the fields it changes.
Write-only secrets: credential responses carry `secret: "set"`, the kind and, for
keys, the key type and SHA256 fingerprint; never a password, key or passphrase.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.params import Parameter

from appliance.auth.permissions import allowed
from appliance.clock import iso
from appliance.devices.models import (
    Credential,
    CredentialCreate,
    CredentialUpdate,
    Device,
    DeviceCreate,
    DeviceUpdate,
    ImportResult,
    Text,
)
from appliance.errors import ValidationError
from appliance.web.api.common import MAX_ID, MAX_LIMIT, when
from appliance.web.deps import actor, principal, services
from appliance.web.guards import permission


class CredentialRef(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str


class HostKeyOut(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    fingerprint: str | None
    pinned_at: str | None
    pin_mode: str | None
    preset_fingerprint: str | None
    presented_fingerprint: str | None
    mismatch_at: str | None


class BindingOut(msgspec.Struct, frozen=True, kw_only=True):
    """"pending": the device uses a stored credential at an address, port or host key that an admin
    has not approved; nothing secret is sent to it until then (README "Credential bindings")."""

    status: str
    requested_by: str | None
    requested_at: str | None
    approved_by: str | None
    approved_at: str | None


class DeviceOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    address: str
    port: int
    tags: list[str]
    poll_interval: int
    enabled: bool
    notes: str
    legacy_algorithms: bool
    credential: CredentialRef | None
    host_key: HostKeyOut
    credential_binding: BindingOut
    created_at: str
    updated_at: str


class CredentialOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    username: str
    kind: str
    secret: str  # always "set": the secret itself is never returned
    key_type: str
    key_bits: int
    fingerprint: str
    has_passphrase: bool
    device_count: int
    created_at: str
    updated_at: str


class ApproveIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The binding the admin reviewed; refused with 409 if the device changed since."""

    address: Text
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    credential_id: Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)] | None


def _can_approve(request: Request) -> bool:
    return allowed(principal(request).role, "devices.approve")


class TrustIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The SHA256 fingerprint of the presented key you reviewed (guards against a key that changed since)."""

    fingerprint: Text


def device_out(d: Device) -> DeviceOut:
    return DeviceOut(
        id=d.id, name=d.name, address=d.address, port=d.port, tags=d.tags, poll_interval=d.poll_interval,
        enabled=d.enabled, notes=d.notes, legacy_algorithms=d.legacy_algorithms,
        credential=CredentialRef(id=d.credential_id, name=d.credential_name or "") if d.credential_id else None,
        host_key=HostKeyOut(status=d.host_key_status, fingerprint=d.host_key_fingerprint, pinned_at=when(d.pinned_at),
                            pin_mode=d.pin_mode, preset_fingerprint=d.preset_fingerprint,
                            presented_fingerprint=d.presented_fingerprint, mismatch_at=when(d.mismatch_at)),
        credential_binding=BindingOut(status=d.binding_status, requested_by=d.binding_requested_by,
                                      requested_at=when(d.binding_requested_at), approved_by=d.binding_approved_by,
                                      approved_at=when(d.binding_approved_at)),
        created_at=iso(d.created_at), updated_at=iso(d.updated_at))


def credential_out(c: Credential) -> CredentialOut:
    return CredentialOut(id=c.id, name=c.name, username=c.username, kind=c.kind, secret="set", key_type=c.key_type,
                         key_bits=c.key_bits, fingerprint=c.fingerprint, has_passphrase=c.has_passphrase,
                         device_count=c.device_count, created_at=iso(c.created_at), updated_at=iso(c.updated_at))


DeviceId = Annotated[int, Parameter(ge=1, le=MAX_ID, description="Device id.")]
CredentialId = Annotated[int, Parameter(ge=1, le=MAX_ID, description="Credential id.")]


@get("/api/v1/devices", guards=[permission("devices.view")], name="api_devices_list", tags=["devices"],
     summary="List devices", description="Search matches name, address or tag; tag filters by one exact tag.")
async def list_devices(request: Request, search: Annotated[str, Parameter(max_length=100)] = "",
                       tag: Annotated[str, Parameter(max_length=32)] = "",
                       limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 100,
                       offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0) -> list[DeviceOut]:
    devices = await services(request).devices.list_devices(search=search, tag=tag, limit=limit, offset=offset)
    return [device_out(d) for d in devices]


@post("/api/v1/devices", guards=[permission("devices.manage")], name="api_devices_create", tags=["devices"],
      summary="Add a device", status_code=201)
async def create_device(request: Request, data: DeviceCreate) -> DeviceOut:
    svc = services(request).devices
    device_id = await svc.create_device(data, actor=actor(request), can_approve=_can_approve(request))
    return device_out(await svc.require_device(device_id))


@get("/api/v1/devices/{device_id:int}", guards=[permission("devices.view")], name="api_devices_get",
     tags=["devices"], summary="One device")
async def get_device(request: Request, device_id: DeviceId) -> DeviceOut:
    return device_out(await services(request).devices.require_device(device_id))


@patch("/api/v1/devices/{device_id:int}", guards=[permission("devices.manage")], name="api_devices_update",
       tags=["devices"], summary="Change a device (fields left out keep their value)")
async def update_device(request: Request, device_id: DeviceId, data: DeviceUpdate) -> DeviceOut:
    svc = services(request).devices
    await svc.update_device(device_id, data, actor=actor(request), can_approve=_can_approve(request))
    return device_out(await svc.require_device(device_id))


@delete("/api/v1/devices/{device_id:int}", guards=[permission("devices.manage")], name="api_devices_delete",
        tags=["devices"], summary="Delete a device", status_code=204)
async def delete_device(request: Request, device_id: DeviceId) -> None:
    await services(request).devices.delete_device(device_id, actor=actor(request))


@post("/api/v1/devices/{device_id:int}/host-key/trust", guards=[permission("devices.manage")],
      name="api_devices_trust_key", tags=["devices"], status_code=200,
      summary="Trust the new host key under review (re-pin)")
async def trust_key(request: Request, device_id: DeviceId, data: TrustIn) -> DeviceOut:
    svc = services(request).devices
    await svc.trust_presented_key(device_id, data.fingerprint.strip(), actor=actor(request),
                                  can_approve=_can_approve(request))
    return device_out(await svc.require_device(device_id))


@post("/api/v1/devices/{device_id:int}/host-key/forget", guards=[permission("devices.manage")],
      name="api_devices_forget_key", tags=["devices"], status_code=200,
      summary="Forget the pinned host key (the next contact pins again)")
async def forget_key(request: Request, device_id: DeviceId) -> DeviceOut:
    svc = services(request).devices
    await svc.forget_host_key(device_id, actor=actor(request), can_approve=_can_approve(request))
    return device_out(await svc.require_device(device_id))


@post("/api/v1/devices/{device_id:int}/credential-binding/approve", guards=[permission("devices.approve")],
      name="api_devices_binding_approve", tags=["devices"], status_code=200,
      summary="Approve a device's credential binding (admin)",
      description="Send the device's stored credential to its current address and port from now on. The body "
                  "repeats what was reviewed; 409 `credential_binding_stale` if the device changed since.")
async def approve_binding(request: Request, device_id: DeviceId, data: ApproveIn) -> DeviceOut:
    svc = services(request).devices
    await svc.approve_binding(device_id, address=data.address, port=data.port, credential_id=data.credential_id,
                              actor=actor(request))
    return device_out(await svc.require_device(device_id))


class ImportIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The CSV file's text (the API is JSON only); same format as the UI import."""

    csv: Annotated[str, msgspec.Meta(max_length=1024 * 1024)]


class ImportRefusedError(ValidationError):
    code = "import_refused"


@post("/api/v1/devices/import", guards=[permission("devices.manage")], name="api_devices_import", tags=["devices"],
      status_code=200, summary="Import devices from CSV text; all rows or none",
      description="A refused file imports nothing: 400 `import_refused` with details.errors = [{line, errors}].")
async def import_devices(request: Request, data: ImportIn) -> ImportResult:
    raw = data.csv.encode("utf-8", "surrogatepass") if data.csv else b""
    result: ImportResult = await services(request).devices.import_csv(raw, actor=actor(request),
                                                                       can_approve=_can_approve(request))
    if not result.ok:
        raise ImportRefusedError(result.message or "Nothing was imported.",
                                 details={"rows": result.rows, "errors": msgspec.to_builtins(result.errors)})
    return result


@get("/api/v1/credentials", guards=[permission("credentials.manage")], name="api_credentials_list",
     tags=["credentials"], summary="List credentials (never their secrets)")
async def list_credentials(request: Request) -> list[CredentialOut]:
    return [credential_out(c) for c in await services(request).devices.list_credentials()]


@post("/api/v1/credentials", guards=[permission("credentials.manage")], name="api_credentials_create",
      tags=["credentials"], summary="Add a credential", status_code=201)
async def create_credential(request: Request, data: CredentialCreate) -> CredentialOut:
    svc = services(request).devices
    cred_id = await svc.create_credential(data, actor=actor(request))
    return credential_out(await svc.require_credential(cred_id))


@get("/api/v1/credentials/{credential_id:int}", guards=[permission("credentials.manage")],
     name="api_credentials_get", tags=["credentials"], summary="One credential (never its secret)")
async def get_credential(request: Request, credential_id: CredentialId) -> CredentialOut:
    return credential_out(await services(request).devices.require_credential(credential_id))


@patch("/api/v1/credentials/{credential_id:int}", guards=[permission("credentials.manage")],
       name="api_credentials_update", tags=["credentials"], summary="Rename, or replace the secret")
async def update_credential(request: Request, credential_id: CredentialId, data: CredentialUpdate) -> CredentialOut:
    svc = services(request).devices
    await svc.update_credential(credential_id, data, actor=actor(request))
    return credential_out(await svc.require_credential(credential_id))


@delete("/api/v1/credentials/{credential_id:int}", guards=[permission("credentials.manage")],
        name="api_credentials_delete", tags=["credentials"], summary="Delete an unused credential", status_code=204)
async def delete_credential(request: Request, credential_id: CredentialId) -> None:
    await services(request).devices.delete_credential(credential_id, actor=actor(request))


ROUTES = [list_devices, create_device, get_device, update_device, delete_device, trust_key, forget_key,
          approve_binding, import_devices,
          list_credentials, create_credential, get_credential, update_credential, delete_credential]
