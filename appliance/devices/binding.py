"""Credential bindings (issue 11, finding 5): who may make the appliance send a stored secret where.

A stored credential is write-only: nobody can read it back. It must not become readable by
pointing it at a host one controls, so a device's *binding* (its credential, address, port
and host-key pin) decides whether the probe may use the secret at all:

- an admin's change is approved (the admin holds every secret's trust already);
- a change by the person who entered the credential's secret is approved (it is theirs);
- any other change that moves a credential to a new device, address, port or host key
  (create, edit, CSV import, forget or re-pin the host key) leaves the device "pending":
  the vault is not opened for it, so nothing secret is sent; the probe only tests TCP
  reachability, until an admin approves the binding (audited, see `approve`).
Edits that do not touch the binding (name, tags, interval, notes) keep its state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.audit import log as audit
from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.devices import queries
from appliance.devices.errors import BindingStaleError, DeviceNotFoundError
from appliance.errors import ConflictError

if TYPE_CHECKING:
    from appliance.store.connection import Connection


def owner_key(actor: Actor) -> str:
    """How `credentials.entered_by` names an actor (an API key acts for its owner)."""
    return "system:" + actor.name if actor.type == "system" else "user:" + actor.name


def entitled(conn: Connection, credential_id: int | None, actor: Actor, can_approve: bool) -> bool:
    """May this actor bind this credential anywhere? (no credential: nothing secret to protect)"""
    if credential_id is None or can_approve:
        return True
    return queries.get_credential_entered_by(conn, credential_id) == owner_key(actor)


def settle(conn: Connection, device_id: int, *, credential_id: int | None, sensitive: bool, before_status: str,
           actor: Actor, can_approve: bool, now: float, why: str) -> str:
    """Record the binding state after a change and return it ('approved' or 'pending').

    `sensitive`: the change moved the credential to a new device/address/port/host key."""
    if not sensitive:
        return before_status
    if entitled(conn, credential_id, actor, can_approve):
        queries.set_binding(conn, device_id, "approved", by=actor.name, now=now)
        return "approved"
    queries.set_binding(conn, device_id, "pending", by=actor.name, now=now)
    audit.record(conn, ts=now, event=Event.DEVICE_BINDING_REQUEST, actor=actor, target=f"device:{device_id}",
                 details={"cred_id": credential_id, "why": why,
                          "message": "awaiting an admin's approval; nothing secret is sent until then"})
    return "pending"


def approve(conn: Connection, device_id: int, *, address: str, port: int, credential_id: int | None, actor: Actor,
            now: float) -> None:
    """An admin approves exactly the binding they reviewed (address, port, credential)."""
    device = queries.get_device(conn, device_id)
    if device is None:
        raise DeviceNotFoundError()
    if device.binding_status != "pending":
        raise ConflictError("This device's credential binding is not awaiting approval.")
    if (device.address, device.port, device.credential_id) != (address, port, credential_id):
        raise BindingStaleError()
    queries.set_binding(conn, device_id, "approved", by=actor.name, now=now)
    audit.record(conn, ts=now, event=Event.DEVICE_BINDING_APPROVE, actor=actor, target=f"device:{device_id}",
                 details={"address": address, "port": port, "cred_id": credential_id,
                          "requested_by": device.binding_requested_by,
                          "host_key_fingerprint": device.host_key_fingerprint or device.preset_fingerprint})
