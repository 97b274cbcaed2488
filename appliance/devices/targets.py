"""What the probe gets for each device: its address, pin and, only when allowed, its opened secret.

This is the one place the vault is opened (DeviceService.list_probe_targets/get_probe_target
call it), and only for the probe. A device whose credential binding awaits an admin's
approval (binding.py) gets no secret: its credential is not even opened.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from appliance.crypto import vault
from appliance.devices import queries
from appliance.devices.credentials import open_credential
from appliance.devices.models import Device, DeviceSecret, ProbeTarget

log = logging.getLogger("appliance.devices.service")  # the logger these records always had

if TYPE_CHECKING:
    from appliance.store.connection import Connection


def probe_targets(conn: Connection, vault_key: bytes, devices: list[Device]) -> list[ProbeTarget]:
    """The devices as probe targets; each credential shared by several devices is opened once."""
    opened: dict[int, DeviceSecret | None] = {}
    out = []
    for d in devices:
        pending = d.credential_id is not None and d.binding_status != "approved"
        if d.credential_id is not None and not pending and d.credential_id not in opened:
            opened[d.credential_id] = _open(conn, vault_key, d.credential_id)
        out.append(ProbeTarget(
            device_id=d.id, name=d.name, address=d.address, port=d.port, poll_interval=d.poll_interval,
            enabled=d.enabled, legacy_algorithms=d.legacy_algorithms, host_key=d.host_key,
            host_key_status=d.host_key_status, preset_fingerprint=d.preset_fingerprint,
            binding_pending=pending,  # the vault is not even opened for it
            credential=None if pending or d.credential_id is None else opened.get(d.credential_id)))
    return out


def _open(conn: Connection, vault_key: bytes, credential_id: int) -> DeviceSecret | None:
    row = queries.get_sealed_secret(conn, credential_id)
    if row is None:
        return None
    try:
        return open_credential(vault_key, credential_id, row[0], row[1])
    except vault.VaultError:
        log.error("sealed credential does not open", extra={"credential_id": credential_id})
        return None
