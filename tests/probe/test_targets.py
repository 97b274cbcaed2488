"""Issue 11, finding 18 (last point): the admin-set probe target policy, through the real server.

Without `[probe] allow_loopback`, devices pointing at loopback (by literal, by a host name that
resolves there, as an IPv4-mapped IPv6 address, or at the appliance's own HTTPS port) are refused
at connect time, after resolution: a real sshd on 127.0.0.1 never sees a connection from the
probe. `allowed_subnets` refuses anything outside the listed networks. Refusals are clear
(device status message, on-demand test and command) and audited."""

import json
import time

import pytest

from tests.api.helpers import api, make_key, sql
from tests.conftest import FAST_HASH_CONFIG, Appliance, csrf_of, do_login, do_setup, wait_until

POLICY_CONFIG = FAST_HASH_CONFIG.replace("allow_loopback = true", """allow_loopback = false
allowed_subnets = ["192.0.2.0/24", "127.0.0.0/8", "::ffff:0:0/96"]
connect_timeout = 1.0""")
assert POLICY_CONFIG != FAST_HASH_CONFIG


@pytest.fixture(scope="module")
def appliance_config():
    return POLICY_CONFIG


@pytest.fixture(scope="module")
def world(shared_appliance, sshd):
    sshd.ready_log = len(sshd.log_text())  # sshd.start() itself connected once to see the banner
    app = shared_appliance
    with app.client() as ui:
        assert do_login(ui).status_code == 303
        yield app, sshd, ui, make_key(app, "admin", "admin")


def _state(app, device_id: int):
    rows = sql(app, "SELECT status, message FROM probe_state WHERE device_id = ?", (device_id,))
    return rows[0] if rows else (None, "")


def _wait_message(app, device_id: int, words: str, timeout: float = 30):
    seen = []

    def shown() -> bool:
        seen.append(_state(app, device_id))
        return words in (seen[-1][1] or "")

    assert wait_until(shown, timeout, interval=0.3), f"device {device_id}: {seen[-1]}"
    return seen[-1]


def test_loopback_own_addresses_and_other_subnets_are_refused_at_connect_time(world):
    app, sshd, ui, key = world
    targets = {"lo-literal": ("127.0.0.1", sshd.port), "lo-name": ("localhost", sshd.port),
               "lo-mapped": ("::ffff:127.0.0.1", sshd.port), "self-https": ("127.0.0.1", app.port),
               "outside": ("198.51.100.7", 22), "inside": ("192.0.2.1", 22)}
    ids = {}
    with api(app, key) as admin:
        for name, (address, port) in targets.items():
            r = admin.post("/api/v1/devices", json={
                "name": name, "address": address, "port": port, "poll_interval": 10,
                "credential": {"username": sshd.user, "password": sshd.password}})
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]
    for name in ("lo-literal", "lo-name", "lo-mapped"):
        status, message = _wait_message(app, ids[name], "probe target policy")
        assert status == "unreachable" and "127.0.0.1 is a loopback address" in message, (name, message)
    status, message = _wait_message(app, ids["self-https"], "probe target policy")
    assert "loopback" in message
    status, message = _wait_message(app, ids["outside"], "probe target policy")
    assert "198.51.100.7 is outside the probe's allowed subnets" in message
    # an allowed address is tried (and simply not reachable here): not a policy refusal
    wait_until(lambda: _state(app, ids["inside"])[0] is not None, 30, interval=0.3)
    assert "policy" not in _state(app, ids["inside"])[1]

    # on demand: the same refusal, in plain words, audited before and after
    page = ui.get(f"/probe/devices/{ids['lo-literal']}/run")
    token = csrf_of(page.text)
    tested = ui.post(f"/probe/devices/{ids['lo-literal']}/test", data={"_csrf": token})
    assert "Refused by the probe target policy" in tested.text
    ran = ui.post(f"/probe/devices/{ids['lo-literal']}/command", data={"_csrf": token, "command": "id -un"})
    assert "Refused by the probe target policy" in ran.text and sshd.user not in ran.text

    # the real sshd on 127.0.0.1 never saw the probe
    time.sleep(1)
    since_start = sshd.log_text()[sshd.ready_log:]
    assert "Connection from" not in since_start, since_start[-2000:]

    refused = sql(app, "SELECT target, outcome, details FROM audit_log WHERE action = 'probe.target.refused'")
    assert {t for t, _, _ in refused} >= {f"device:{ids[n]}" for n in ("lo-literal", "lo-name", "outside")}
    assert all(o == "denied" for _, o, _ in refused)
    runs = sql(app, "SELECT outcome, details FROM audit_log WHERE action = 'probe.command.run'")
    assert runs[-1][0] == "denied" and "probe target policy" in json.loads(runs[-1][1])["error"]
    tests = sql(app, "SELECT outcome FROM audit_log WHERE action = 'probe.connectivity.test'")
    assert tests[-1][0] == "denied"


def test_policy_settings_are_checked_at_start(tmp_path):
    from appliance import config

    with pytest.raises(Exception, match=r"allowed_subnets\[1\]"):
        config.parse({"probe": {"allowed_subnets": ["10.0.0.0/8", "not-a-net"]}})
    assert config.parse({}).probe.allow_loopback is False  # secure default


def test_demo_fleet_is_allowed_exactly_and_nothing_else_on_loopback(tmp_path):
    """`serve --demo-data` on a policy without allow_loopback: its own simulated devices are polled
    (the demo adds exceptions for exactly their ports), the appliance's own port is still refused."""
    config = FAST_HASH_CONFIG.replace("allow_loopback = true", "allow_loopback = false")
    app = Appliance(tmp_path / "data", config=config, extra_args=["--demo-data"])
    try:
        with app.client() as ui:
            assert do_setup(ui, app.setup_code()).status_code == 303
            assert do_login(ui).status_code == 303
        with api(app, make_key(app, "admin", "admin")) as admin:
            r = admin.post("/api/v1/devices", json={"name": "self", "address": "127.0.0.1", "port": app.port,
                                                    "credential": {"username": "x", "password": "not-sent-1"}})
            assert r.status_code == 201, r.text
            own = r.json()["id"]
        _wait_message(app, own, "probe target policy")
        assert wait_until(lambda: len(sql(app, "SELECT 1 FROM probe_state s JOIN devices d ON d.id = s.device_id"
                                          " WHERE d.name LIKE 'demo-%' AND s.status = 'up'")) >= 4, 40, interval=0.3), \
            sql(app, "SELECT device_id, status, message FROM probe_state")
    finally:
        app.stop()
