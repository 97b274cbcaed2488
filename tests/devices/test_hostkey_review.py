"""DEV-3 operator side through the real server: a device whose key changed shows pinned vs
presented fingerprints side by side; "trust the new key" needs the operator role and a CSRF
token, refuses a stale fingerprint, re-pins, clears the mismatch and is audited.

The mismatch itself is recorded the way the probe does it (DeviceService on the same data
directory while the server is stopped); the real-sshd key swap test belongs to the probe."""

import asyncio
import re

import pytest

from appliance.app import open_database
from appliance.audit.models import Actor
from appliance.clock import SystemClock
from appliance.crypto import keyfile
from appliance.crypto.keypool import KeyPool
from appliance.devices.service import DeviceService
from appliance.paths import DataDir
from tests.conftest import Appliance, csrf_of, do_login, do_setup
from tests.devices.keys import fingerprint, keygen


def _offline(data_dir, fn):
    db, _ = open_database(data_dir, readers=1)
    pool = KeyPool()
    try:
        return asyncio.run(fn(DeviceService(db, keyfile.load_key(DataDir(data_dir).vault_key), SystemClock(), pool)))
    finally:
        pool.close()
        db.close()


@pytest.fixture(scope="module")
def host_keys():
    """(pinned, presented): the device's old and new SSH host keys."""
    return keygen("ed25519")[1], keygen("ecdsa", 521)[1]


@pytest.fixture(scope="module")
def swapped(tmp_path_factory, host_keys):
    """A server whose one device has a pinned key and a different presented one; `.device_id`."""
    data = tmp_path_factory.mktemp("hostkey") / "data"
    app = Appliance(data)
    port = app.port
    with app.client() as c:
        assert do_setup(c, app.setup_code()).status_code == 303
        assert do_login(c).status_code == 303
        page = c.get("/devices/new")
        r = c.post("/devices/new", data={"_csrf": csrf_of(page.text), "name": "swapped", "address": "192.0.2.9",
                                         "port": "22", "poll_interval": "60", "enabled": "on"})
        assert r.status_code == 303
    app.stop()
    old, new = host_keys

    async def probe_sees_swap(svc):
        (device,) = await svc.list_devices(search="swapped")
        await svc.pin_host_key(device.id, old, actor=Actor.system(), mode="tofu")
        await svc.record_host_key_mismatch(device.id, new)
        return device.id

    app.device_id = _offline(data, probe_sees_swap)
    again = Appliance(data, port)
    again.device_id = app.device_id
    yield again
    again.stop()


@pytest.fixture(scope="module")
def ui(swapped):
    with swapped.client() as c:
        assert do_login(c).status_code == 303
        yield c


def test_review_page_shows_both_fingerprints_side_by_side(swapped, ui, host_keys):
    old, new = host_keys
    listing = ui.get("/devices").text
    assert "host key changed: review" in listing
    page = ui.get(f"/devices/{swapped.device_id}/host-key")
    assert page.status_code == 200
    assert re.search(r'id="pinned-fp">' + re.escape(fingerprint(old)), page.text)
    assert re.search(r'id="presented-fp">' + re.escape(fingerprint(new)), page.text)
    assert "Trust the new key" in page.text
    api = ui.get(f"/devices/{swapped.device_id}")
    assert "presented a different host key" in api.text


def test_trust_needs_csrf_and_current_fingerprint_then_repins_and_audits(swapped, ui, host_keys):
    old, new = host_keys
    path = f"/devices/{swapped.device_id}/host-key/trust"
    assert ui.post(path, data={"fingerprint": fingerprint(new)}).status_code == 403  # no CSRF token
    token = csrf_of(ui.get(f"/devices/{swapped.device_id}/host-key").text)
    stale = ui.post(path, data={"_csrf": token, "fingerprint": fingerprint(old)})
    assert stale.status_code == 409 and "different key since this page was loaded" in stale.text
    assert "host key changed" in ui.get("/devices").text  # nothing changed
    ok = ui.post(path, data={"_csrf": token, "fingerprint": fingerprint(new)})
    assert ok.status_code == 303
    detail = ui.get(ok.headers["location"]).text
    assert "The new host key is now trusted." in detail and fingerprint(new) in detail
    assert "presented a different host key" not in detail
    again = ui.post(path, data={"_csrf": token, "fingerprint": fingerprint(new)})
    assert again.status_code == 409  # nothing left to review
    audit = ui.get("/audit", params={"action": "device.hostkey"}).text
    for action in ("device.hostkey.pin", "device.hostkey.mismatch", "device.hostkey.repin"):
        assert action in audit
    assert fingerprint(new) in audit and fingerprint(old) in audit


def test_viewer_cannot_trust(swapped, ui):
    page = ui.get("/api-keys/new")
    r = ui.post("/api-keys/new", data={"_csrf": csrf_of(page.text), "name": "v", "role": "viewer",
                                       "expires_days": "1"})
    key = re.search(r'value="(op_[^"]+)"', r.text).group(1)
    with swapped.client(headers={"Authorization": f"Bearer {key}"}) as viewer:
        r = viewer.post(f"/api/v1/devices/{swapped.device_id}/host-key/trust", json={"fingerprint": "SHA256:x"})
        assert r.status_code == 403
        assert viewer.get(f"/api/v1/devices/{swapped.device_id}").json()["host_key"]["status"] == "pinned"
