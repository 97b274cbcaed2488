"""`serve --demo-data`: start a few simulated devices and add them to the inventory.

Host keys and ports are kept under <data dir>/demo/ so a restart presents the same
keys (the pins stay valid); if a remembered port is taken, the device is moved to a
new port through DeviceService.update_device (audited).

The probe target policy refuses loopback unless `[probe] allow_loopback` is on; the demo
adds exceptions for exactly its own devices (127.0.0.1 and their ports), nothing else on
loopback, so `serve --demo-data` works on the default configuration.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import msgspec

from appliance.audit.models import Actor
from appliance.crypto import tokens
from appliance.demo.fleet import DEMO_USER, Fleet
from appliance.devices.models import CredentialCreate, CredentialUpdate, DeviceCreate, DeviceUpdate
from appliance.ssh import keys, server

log = logging.getLogger("outpost.demo")
DEMO_DEVICES = 4
CREDENTIAL_NAME = "demo-fleet"
DEMO_ADDRESS = "127.0.0.1"


def _state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


async def start_demo(services, count: int = DEMO_DEVICES) -> Fleet:
    """Start `count` simulated devices and make sure each is in the inventory."""
    folder = services.data_dir / "demo"
    folder.mkdir(mode=0o700, exist_ok=True)
    state_file = folder / "fleet.json"
    state = _state(state_file)
    password = state.get("password") or tokens.new_token()[:24]
    fleet = Fleet(password)
    ports = state.get("ports", {})
    for index in range(1, count + 1):
        key_file = folder / f"host-{index}.key"
        if key_file.exists():
            host_key = keys.load_private_key(key_file.read_text())
        else:
            host_key = server.new_host_key()
            _write_private(key_file, server.export_private(host_key))
        try:
            device = await fleet.add(index, port=int(ports.get(str(index), 0)), host_key=host_key)
        except OSError:
            device = await fleet.add(index, port=0, host_key=host_key)
        ports[str(index)] = device.port
    _write_private(state_file, json.dumps({"password": password, "ports": ports}))
    runner = services.probe_runner
    runner.policy = msgspec.structs.replace(runner.policy, targets=runner.policy.targets.with_endpoints(
        (DEMO_ADDRESS, device.port) for device in fleet.devices))
    await _register(services.devices, fleet, new_password="password" not in state)
    log.info("demo fleet started", extra={"devices": len(fleet.devices)})
    return fleet


async def _register(devices, fleet: Fleet, *, new_password: bool) -> None:
    actor = Actor.system()
    credentials = {c.name: c for c in await devices.list_credentials()}
    if CREDENTIAL_NAME in credentials:
        cred_id = credentials[CREDENTIAL_NAME].id
        if new_password:
            await devices.update_credential(cred_id, CredentialUpdate(username=DEMO_USER, kind="password",
                                                                      password=fleet.password), actor=actor)
    else:
        cred_id = await devices.create_credential(CredentialCreate(name=CREDENTIAL_NAME, username=DEMO_USER,
                                                                   kind="password", password=fleet.password),
                                                  actor=actor)
    existing = {d.name: d for d in await devices.list_devices(search="demo-")}
    for demo in fleet.devices:
        data = DeviceCreate(name=demo.name, address=DEMO_ADDRESS, port=demo.port, tags=["demo"], poll_interval=10,
                            credential_id=cred_id, notes="Simulated device started by --demo-data.")
        current = existing.get(demo.name)
        if current is None:
            await devices.create_device(data, actor=actor)
        elif current.port != demo.port or current.credential_id != cred_id:
            # every field, as on creation (a demo device is reset, not merged)
            await devices.update_device(current.id, DeviceUpdate(**msgspec.structs.asdict(data)), actor=actor)
