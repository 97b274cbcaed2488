"""Finding 21 (issue 11): an API write's `api.write` audit record commits in the same
transaction as the change, before the 2xx is sent. Eight rounds of "create a device with a
key, kill -9 the server the moment the 201 status line arrives" leave eight devices, and
each device.create record has its api.write record right after it (same transaction).
Before the fix the record was written after the response, in a transaction of its own, and
most of them were lost."""

from __future__ import annotations

import json
import os
import signal

from tests.api.helpers import api, make_key, sql
from tests.conftest import Appliance, do_login, do_setup, free_port

ROUNDS = 8


def test_api_write_survives_kill_9_right_after_the_201(tmp_path):
    data = tmp_path / "data"
    app = Appliance(data, free_port())
    with app.client() as client:
        assert do_setup(client, app.setup_code()).status_code == 303
        assert do_login(client).status_code == 303
    key = make_key(app, "admin", "admin")
    for n in range(ROUNDS):
        if n:
            app = Appliance(data, free_port())
        with api(app, key) as c:
            body = {"name": f"crash-{n}", "address": f"192.0.2.{n + 1}", "port": 22}
            with c.stream("POST", "/api/v1/devices", json=body) as response:
                os.killpg(app.proc.pid, signal.SIGKILL)  # the status line is in: kill before anything else
                assert response.status_code == 201
        app.proc.wait(timeout=10)
        app.stop()
    rows = sql(_Dir(data),
               "SELECT seq, action, actor_type, target, details FROM audit_log "
               "WHERE action IN ('device.create', 'api.write') ORDER BY seq")
    creates = [r for r in rows if r[1] == "device.create"]
    writes = {r[0]: r for r in rows if r[1] == "api.write"}
    assert len(creates) == ROUNDS
    assert sql(_Dir(data), "SELECT count(*) FROM devices") == [(ROUNDS,)]
    for seq, _, actor_type, _, _ in creates:
        assert actor_type == "api_key"
        follower = writes.get(seq + 1)
        assert follower is not None, f"device.create #{seq} has no api.write committed with it"
        details = json.loads(follower[4])
        assert details["method"] == "POST" and details["path"] == "/api/v1/devices"
        assert follower[3].startswith("apikey:")


class _Dir:
    """What tests.api.helpers.sql needs of an appliance: its data directory."""

    def __init__(self, data_dir) -> None:
        self.data_dir = data_dir


def test_a_refused_or_changeless_write_is_recorded_after_with_its_status(appliance, admin_client):
    viewer, admin = make_key(appliance, "admin", "viewer"), make_key(appliance, "admin", "admin")
    with api(appliance, viewer) as c:
        assert c.post("/api/v1/devices", json={"name": "x", "address": "192.0.2.9"}).status_code == 403
    with api(appliance, admin) as c:
        assert c.post("/api/v1/devices", json={"name": "", "address": "nope nope"}).status_code == 400
        assert c.delete("/api/v1/devices/424242").status_code == 404
    rows = sql(appliance, "SELECT outcome, details FROM audit_log WHERE action = 'api.write' ORDER BY seq")
    seen = [(outcome, json.loads(details)["status"]) for outcome, details in rows]
    assert seen == [("denied", 403), ("failure", 400), ("failure", 404)], seen
