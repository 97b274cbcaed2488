"""The write steps of the devices capability, each run inside a caller's `db.write` job.

DeviceService and the CSV import (csvimport.py) both store devices and credentials through
these, so a device added from a form, a JSON body or a CSV row gets the same rows, the same
audit record in the same transaction, the same preset pin and the same credential binding.

Invariants: every step records its audit event with the connection it writes with (both
commit or neither does); a secret is sealed before it is stored and never reaches an audit
record; a step that finds a conflict raises, and the caller's job then rolls back whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from appliance.audit import log as audit
from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.crypto import sshkeys
from appliance.devices import binding, queries
from appliance.devices.credentials import KeyFacts, seal_credential
from appliance.devices.errors import DeviceNotFoundError
from appliance.devices.models import CredentialFields, Device, DeviceFields, PinMode
from appliance.errors import ValidationError

if TYPE_CHECKING:
    from appliance.store.connection import Connection

_PIN_EVENTS = {"tofu": Event.DEVICE_HOSTKEY_PIN, "preset": Event.DEVICE_HOSTKEY_PRESET,
               "review": Event.DEVICE_HOSTKEY_REPIN}


def require_device(conn: Connection, device_id: int) -> Device:
    """The device row, or DeviceNotFoundError."""
    device = queries.get_device(conn, device_id)
    if device is None:
        raise DeviceNotFoundError()
    return device


def details(fields: DeviceFields) -> dict:
    """A device's fields as its audit records name them (no secret is among them)."""
    return {"name": fields.name, "address": fields.address, "port": fields.port, "tags": fields.tags,
            "poll_interval": fields.poll_interval, "enabled": fields.enabled,
            "legacy_algorithms": fields.legacy_algorithms, "cred_id": fields.credential_id,
            "preset_fingerprint": fields.preset_fingerprint}


def insert_device(conn: Connection, fields: DeviceFields, *, actor: Actor, now: float, can_approve: bool) -> int:
    """Store a checked device with its tags and preset pin; audited; its binding settled (binding.py)."""
    device_id = queries.insert_device(
        conn, name=fields.name, address=fields.address, port=fields.port, poll_interval=fields.poll_interval,
        enabled=fields.enabled, notes=fields.notes, legacy_algorithms=fields.legacy_algorithms,
        credential_id=fields.credential_id, preset_fingerprint=fields.preset_fingerprint, now=now)
    queries.replace_tags(conn, device_id, fields.tags)
    audit.record(conn, ts=now, event=Event.DEVICE_CREATE, actor=actor, target=f"device:{device_id}",
                 details=details(fields))
    if fields.preset_key:
        pin(conn, device_id, fields.preset_key, actor=actor, mode="preset", now=now, previous=None)
    binding.settle(conn, device_id, credential_id=fields.credential_id, sensitive=fields.credential_id is not None,
                   before_status="approved", actor=actor, can_approve=can_approve, now=now,
                   why="new device with a stored credential")
    return device_id


def insert_credential(conn: Connection, vault_key: bytes, clean: CredentialFields, facts: KeyFacts, *, actor: Actor,
                      now: float) -> int:
    """Store a checked credential, its secret sealed to its own row; audited without the secret."""
    if queries.get_credential_id_by_name(conn, clean.name) is not None:
        raise ValidationError("The credential was not saved.",
                              details={"name": "A credential with this name already exists."})
    cred_id = queries.insert_credential(conn, name=clean.name, username=clean.username, kind=clean.kind,
                                        key_type=facts.key_type, key_bits=facts.bits,
                                        fingerprint=facts.fingerprint, has_passphrase=bool(clean.passphrase),
                                        entered_by=binding.owner_key(actor), now=now)
    queries.update_secret(conn, cred_id, seal_credential(vault_key, cred_id, clean))
    audit.record(conn, ts=now, event=Event.CREDENTIAL_CREATE, actor=actor, target=f"credential:{cred_id}",
                 details={"name": clean.name, "username": clean.username, "kind": clean.kind,
                          "key_type": facts.key_type, "fingerprint": facts.fingerprint})
    return cred_id


def attach_credential(conn: Connection, vault_key: bytes, fields: DeviceFields,
                      checked: tuple[CredentialFields, KeyFacts] | None, *, actor: Actor, now: float) -> DeviceFields:
    """Store a credential entered together with a device (checked already), under a name no other
    credential has, and point the device at it; `fields` unchanged when there is none."""
    if checked is None:
        return fields
    clean, facts = checked
    clean = msgspec.structs.replace(clean, name=free_credential_name(conn, clean.name))
    cred_id = insert_credential(conn, vault_key, clean, facts, actor=actor, now=now)
    return msgspec.structs.replace(fields, credential_id=cred_id)


def free_credential_name(conn: Connection, wanted: str) -> str:
    """`wanted`, or "wanted (2)", "wanted (3)"... whichever no credential has yet."""
    name = wanted
    for n in range(2, 50):
        if queries.get_credential_id_by_name(conn, name) is None:
            break
        name = f"{wanted} ({n})"
    return name


def pin(conn: Connection, device_id: int, key_line: str, *, actor: Actor, mode: PinMode, now: float,
        previous: str | None) -> str:
    """Pin `key_line` as the device's host key; audited with its SHA256 fingerprint, which is returned."""
    fingerprint = sshkeys.fingerprint_of_key_line(key_line)
    queries.update_pin(conn, device_id, key_line=key_line, fingerprint=fingerprint, mode=mode, now=now)
    audit.record(conn, ts=now, event=_PIN_EVENTS[mode], actor=actor, target=f"device:{device_id}",
                 details={"fingerprint": fingerprint, "previous_fingerprint": previous, "mode": mode})
    return fingerprint


def reference_errors(conn: Connection, fields: DeviceFields, device_id: int | None) -> dict[str, str]:
    """What the fields name that the database refuses: a taken name, a credential that is gone."""
    errors = {}
    other = queries.get_device_id_by_name(conn, fields.name)
    if other is not None and other != device_id:
        errors["name"] = "A device with this name already exists."
    if fields.credential_id is not None and queries.get_credential(conn, fields.credential_id) is None:
        errors["credential_id"] = "That credential does not exist (any more)."
    return errors


def update_device(conn: Connection, device_id: int, before: Device, fields: DeviceFields, *, actor: Actor, now: float,
                  can_approve: bool) -> None:
    """Write a checked change to a device: its row, tags, audit record, preset pin and binding."""
    queries.update_device(conn, device_id, name=fields.name, address=fields.address, port=fields.port,
                          poll_interval=fields.poll_interval, enabled=fields.enabled, notes=fields.notes,
                          legacy_algorithms=fields.legacy_algorithms, credential_id=fields.credential_id,
                          preset_fingerprint=fields.preset_fingerprint, now=now)
    queries.replace_tags(conn, device_id, fields.tags)
    after = details(fields)
    was = {"cred_id": before.credential_id, "tags": before.tags}
    changed = sorted(k for k, v in after.items() if v != was.get(k, getattr(before, k, None)))
    audit.record(conn, ts=now, event=Event.DEVICE_UPDATE, actor=actor, target=f"device:{device_id}",
                 details={**after, "changed": changed})
    key = fields.preset_key
    repin = key is not None and not sshkeys.same_public_key(key, before.host_key or "")
    if key is not None and repin:
        pin(conn, device_id, key, actor=actor, mode="preset", now=now, previous=before.host_key_fingerprint)
    moved = [k for k in ("credential_id", "address", "port", "preset_fingerprint")
             if getattr(fields, k) != getattr(before, k)] + (["host_key"] if repin else [])
    binding.settle(conn, device_id, credential_id=fields.credential_id, sensitive=bool(moved),
                   before_status=before.binding_status, actor=actor, can_approve=can_approve, now=now,
                   why="changed: " + ", ".join(moved))
