"""Issue 11, finding 5: an operator must not be able to make the appliance send a stored credential
they could not read to a host of their choosing (README "Credential bindings").

Through the real server over TLS, with a real OpenSSH sshd (the legitimate host) and a second SSH
server that logs every password it is offered (the attacker's host, tests/devices/honeypot.py).
An admin stores a credential; an operator then tries each way of pointing it elsewhere:
1. a new device at the attacker's address with the admin's credential_id;
2. moving the admin's working device to the attacker's address;
3. forgetting the host-key pin of a device whose pin protects it;
4. a CSV import naming the admin's credential;
5. on-demand connectivity test and command on such a device.
Several poll intervals later the attacker has seen TCP connections (reachability) but no
password. An operator's own credential still works; an admin's approval (audited, refused
when stale or by an operator) releases the credential to the approved address."""

import re

import pytest

from tests.api.helpers import api, make_key, sql
from tests.auth.webusers import create_user, signed_in
from tests.conftest import csrf_of, do_login, wait_until
from tests.devices.honeypot import Honeypot

OWN_SECRET = "op-own-Secret-4417"
POLL = 10  # the shortest poll interval


@pytest.fixture(scope="module")
def world(shared_appliance, sshd):
    app = shared_appliance
    pot = Honeypot(listeners=5)
    try:
        with app.client() as admin_ui:
            assert do_login(admin_ui).status_code == 303
            temp = create_user(admin_ui, "oscar", "operator")
            with signed_in(app, "oscar", temp) as operator_ui:
                yield app, sshd, pot, admin_ui, operator_ui, make_key(app, "admin", "admin"), \
                    make_key(app, "oscar", "operator")
    finally:
        pot.close()


def _status(app, device_id: int) -> str | None:
    rows = sql(app, "SELECT status FROM probe_state WHERE device_id = ?", (device_id,))
    return rows[0][0] if rows else None


def test_a_credential_goes_only_where_an_admin_or_its_owner_bound_it(world):
    app, sshd, pot, admin_ui, operator_ui, admin_key, op_key = world
    with api(app, admin_key) as admin, api(app, op_key) as op:
        r = admin.post("/api/v1/credentials", json={"name": "admin-root", "username": sshd.user,
                                                    "password": sshd.password})
        assert r.status_code == 201, r.text
        cred = r.json()["id"]
        # the admin's own devices: one at the real host (logs in), one whose preset pin protects it
        real = admin.post("/api/v1/devices", json={"name": "real-host", "address": "127.0.0.1", "port": sshd.port,
                                                   "credential_id": cred, "poll_interval": POLL}).json()
        pinned = admin.post("/api/v1/devices", json={
            "name": "pinned-host", "address": "127.0.0.1", "port": pot.ports[2], "credential_id": cred,
            "poll_interval": POLL, "host_key": sshd.host_line_a}).json()
        assert wait_until(lambda: _status(app, real["id"]) == "up", 30, interval=0.3), \
            "timed out waiting for the admin's device to log in"
        assert wait_until(lambda: _status(app, pinned["id"]) == "host key changed", 30, interval=0.3), \
            "timed out waiting for the pin to refuse the impostor"

        # 1. a new device at the attacker's address with the admin's credential
        r = op.post("/api/v1/devices", json={"name": "evil-new", "address": "127.0.0.1", "port": pot.ports[0],
                                             "credential_id": cred, "poll_interval": POLL})
        assert r.status_code == 201, r.text
        evil = r.json()
        # 2. the admin's working device moved to the attacker's address
        moved = op.patch(f"/api/v1/devices/{real['id']}", json={"port": pot.ports[1]})
        assert moved.status_code == 200, moved.text
        # 3. forgetting the pin that protected the admin's device (browser form)
        page = operator_ui.get(f"/devices/{pinned['id']}/host-key")
        forgot = operator_ui.post(f"/devices/{pinned['id']}/host-key/forget", data={"_csrf": csrf_of(page.text)})
        assert forgot.status_code == 303, forgot.text
        dialled_before_forget = pot.connected(pot.ports[2])
        # 4. a CSV import naming the admin's credential
        r = op.post("/api/v1/devices/import",
                    json={"csv": f"name,address,port,poll_interval,credential\nevil-csv,127.0.0.1,{pot.ports[3]},"
                                 f"{POLL},admin-root\n"})
        assert r.status_code == 200, r.text
        # the operator's own credential (typed in with the device) is theirs: it is used at once
        r = op.post("/api/v1/devices", json={"name": "own-cred", "address": "127.0.0.1", "port": pot.ports[4],
                                             "poll_interval": POLL,
                                             "credential": {"username": "oscar", "password": OWN_SECRET}})
        assert r.status_code == 201, r.text
        own = r.json()
        # 5. on demand: the command never reaches a shell on the attacker's host
        page = operator_ui.get(f"/probe/devices/{evil['id']}/run")
        token = csrf_of(page.text)
        ran = operator_ui.post(f"/probe/devices/{evil['id']}/command", data={"_csrf": token, "command": "id"})
        tested = operator_ui.post(f"/probe/devices/{evil['id']}/test", data={"_csrf": token})

        # several poll intervals: the attacker sees reachability checks, never the admin's password.
        # Watch until every redirected device was dialled after its attack (the new one twice) and the
        # operator's own device logged in: at most the 2.5 poll intervals this used to sleep.
        wait_until(lambda: pot.connected(pot.ports[0]) >= 2 and pot.connected(pot.ports[1]) >= 1
                   and pot.connected(pot.ports[2]) > dialled_before_forget and pot.connected(pot.ports[3]) >= 1
                   and (pot.ports[4], "oscar", OWN_SECRET) in pot.offered(), 2.5 * POLL, interval=0.5)
        offered = pot.offered()
        assert not [p for p in offered if p[2] == sshd.password], offered
        assert pot.connected(pot.ports[0]) >= 2 and pot.connected(pot.ports[1]) >= 1  # TCP reachability went on
        assert (pot.ports[4], "oscar", OWN_SECRET) in offered  # the honeypot does log what it is sent

        # each refused binding is visible as such
        for device_id in (evil["id"], real["id"], pinned["id"]):
            binding = admin.get(f"/api/v1/devices/{device_id}").json()["credential_binding"]
            assert binding["status"] == "pending" and binding["requested_by"] == "oscar", binding
        (imported,) = [d for d in admin.get("/api/v1/devices", params={"search": "evil-csv"}).json()]
        assert imported["credential_binding"]["status"] == "pending"
        assert own["credential_binding"]["status"] == "approved"
        assert admin.get(f"/api/v1/devices/{pinned['id']}").json()["host_key"]["status"] == "unpinned"
        assert ran.status_code == 200 and "awaits an admin" in ran.text
        assert "awaits an admin" in tested.text
        detail = operator_ui.get(f"/devices/{evil['id']}").text
        assert "Awaiting admin approval of the credential binding" in detail and "Approve:" not in detail

        # approval: admins only, for exactly what they reviewed, audited
        body = {"address": "127.0.0.1", "port": pot.ports[0], "credential_id": cred}
        path = f"/api/v1/devices/{evil['id']}/credential-binding/approve"
        assert op.post(path, json=body).status_code == 403
        stale = admin.post(path, json={**body, "port": pot.ports[1]})
        assert stale.status_code == 409 and stale.json()["error"]["code"] == "credential_binding_stale"
        assert not [p for p in pot.offered() if p[2] == sshd.password]
        ok = admin.post(path, json=body)
        assert ok.status_code == 200 and ok.json()["credential_binding"]["status"] == "approved", ok.text
        assert ok.json()["credential_binding"]["approved_by"] == "admin"
        assert wait_until(lambda: [p for p in pot.offered(pot.ports[0]) if p[2] == sshd.password], 3 * POLL,
                          interval=0.3), "timed out waiting for the approved binding to use the credential"
        assert not [p for p in pot.offered() if p[2] == sshd.password and p[0] != pot.ports[0]]
        assert admin.post(path, json=body).status_code == 409  # nothing left to approve

    audit = admin_ui.get("/audit", params={"action": "device.binding"}).text
    assert audit.count("device.binding.request") >= 4 and "device.binding.approve" in audit


def test_admin_approves_in_the_browser_and_operators_see_no_button(world):
    app, sshd, pot, admin_ui, operator_ui, admin_key, op_key = world
    with api(app, admin_key) as admin, api(app, op_key) as op:
        cred = admin.post("/api/v1/credentials", json={"name": "admin-ui-cred", "username": "nobody",
                                                       "password": "admin-ui-Secret-88"}).json()["id"]
        device = op.post("/api/v1/devices", json={"name": "ui-pending", "address": "192.0.2.77",
                                                  "credential_id": cred}).json()
    assert device["credential_binding"]["status"] == "pending"
    listing = operator_ui.get("/devices").text
    assert re.search(r"ui-pending.*?awaiting admin approval", listing, re.S)
    page = admin_ui.get(f"/devices/{device['id']}")
    assert "Approve: send this credential to 192.0.2.77 port 22" in page.text
    form = {"_csrf": csrf_of(page.text), "address": "192.0.2.77", "port": "22", "credential_id": str(cred)}
    denied = operator_ui.post(f"/devices/{device['id']}/binding/approve",
                              data={**form, "_csrf": csrf_of(operator_ui.get("/devices").text)})
    assert denied.status_code == 403
    assert admin_ui.post(f"/devices/{device['id']}/binding/approve", data={**form, "_csrf": ""}).status_code == 403
    r = admin_ui.post(f"/devices/{device['id']}/binding/approve", data=form)
    assert r.status_code == 303, r.text
    assert "Credential binding approved" in admin_ui.get(r.headers["location"]).text
