"""ACL-1: every browser route, signed in as each role, answers exactly as the permission table says.

Routes come from the live route table (nothing listed by hand); a route guarded by
permission("x") must be refused (403) to roles without "x" and served to roles with it.
Routes with path parameters are covered by the object-level tests; /api/ and /metrics
take API keys and are covered by tests/access and tests/api.

Opening a page is not the whole story (issue 11 finding 17): parts of pages and the
fragments and JSON they load carry data of their own (health figures, probe status and
latency, file locations). PARTS lists each such part with the permission it needs; the
second test checks every role sees exactly the parts its permissions allow, in pages,
htmx fragments, dashboard JSON, the API and /metrics."""

import re
import time

import pytest

from appliance import app as app_mod
from appliance import config
from appliance.app import open_database
from appliance.auth import queries
from appliance.auth.permissions import ROLES, allowed
from appliance.clock import FrozenClock
from appliance.web import create_app, guards
from tests.api.helpers import api, make_key, sql
from tests.conftest import do_login


def _browser_get_routes(data_dir):
    services = app_mod.build(config.with_data_dir(config.Config(), str(data_dir)), FrozenClock())
    try:
        app = create_app(services)
        found = []
        for route in app.routes:
            if "{" in route.path or route.path.startswith(("/api/", "/metrics", "/static")):
                continue
            for handler in route.route_handlers:
                if "GET" in handler.http_methods:
                    (kind,) = guards.access_kinds(handler)
                    found.append((route.path, kind))
        return sorted(set(found))
    finally:
        services.close()


def _add_role_users(appliance) -> None:
    """matrix-viewer, matrix-auditor, matrix-operator, with the admin's password (once per server:
    the module's tests share one)."""
    database, _ = open_database(appliance.data_dir, readers=1)
    try:
        password_hash = database.read_sync(
            lambda c: c.execute("SELECT password_hash FROM users WHERE username = 'admin'").fetchone()[0])
        existing = {name for (name,) in database.read_sync(
            lambda c: c.execute("SELECT username FROM users").fetchall())}
        for role in ROLES:
            if role != "admin" and f"matrix-{role}" not in existing:
                database.write_sync(lambda c, role=role: queries.insert_user(
                    c, username=f"matrix-{role}", role=role, password_hash=password_hash,
                    must_change_password=False, now=time.time()))
    finally:
        database.close()


def _username(role: str) -> str:
    return "admin" if role == "admin" else f"matrix-{role}"


def test_every_role_gets_exactly_its_permissions(shared_appliance, tmp_path):
    routes = _browser_get_routes(tmp_path / "routes")
    assert len(routes) > 10
    _add_role_users(shared_appliance)
    wrong, refused = [], {role: 0 for role in ROLES}
    for role in ROLES:
        username = _username(role)
        with shared_appliance.client(follow_redirects=False) as client:
            assert do_login(client, username=username).status_code == 303, role
            for path, kind in routes:
                status = client.get(path).status_code
                if kind.startswith("permission:"):
                    expect_allowed = allowed(role, kind.split(":", 1)[1])
                else:
                    expect_allowed = True  # public or any signed-in user
                if expect_allowed and status in (401, 403):
                    wrong.append(f"{role} refused {path} ({kind}): {status}")
                if not expect_allowed and status != 403:
                    wrong.append(f"{role} reached {path} ({kind}): {status}")
                refused[role] += status == 403
    assert not wrong, "\n".join(wrong)
    assert refused["admin"] == 0 and all(refused[r] > 0 for r in ROLES if r != "admin"), refused


@pytest.mark.parametrize("role", ROLES)
def test_roles_exist_as_data(shared_appliance, role):
    database, _ = open_database(shared_appliance.data_dir, readers=1)
    try:
        assert database.read_sync(lambda c: c.execute("SELECT count(*) FROM roles WHERE name = ?", (role,)).fetchone()[0]) == 1
    finally:
        database.close()


def _parts(appliance, device_id: int) -> list[tuple[str, str, str]]:
    """(path, regex marking the part, permission it needs) for every part of a page that
    carries data of its own."""
    return [
        ("/dashboard", r'id="health"', "health.read"),  # CPU, memory, disk, database size, certificate
        ("/dashboard", r'hx-get="/dashboard/health"', "health.read"),
        ("/dashboard", r'id="fleet"', "probe.view"),
        ("/devices", r'<th scope="col">Status</th>', "probe.view"),
        ("/devices", r'status-up', "probe.view"),  # the probe's status of the device
        ("/devices", r'\b13 ms\b', "probe.view"),  # and its latency
        (f"/devices/{device_id}", rf'hx-get="/devices/{device_id}/probe-panel"', "probe.view"),
        ("/about", re.escape(str(appliance.data_dir)), "settings.tls"),  # the absolute data path
    ]


# (how it is fetched, path, permission): fragments and JSON a page loads, and machine endpoints.
FRAGMENTS = [
    ("browser", "/dashboard/health", "health.read"),
    ("browser", "/dashboard/health.json", "health.read"),
    ("browser", "/probe/fleet", "probe.view"),
    ("key", "/api/v1/health", "health.read"),
    ("key", "/metrics", "health.read"),  # it carries the health figures, whatever metrics.read says
]


def _device_with_probe_status(appliance) -> int:
    """A disabled device (never polled) with a stored probe status: up, 13 ms."""
    key = make_key(appliance, "admin", "admin")
    with api(appliance, key) as c:
        r = c.post("/api/v1/devices", json={"name": "matrix-device", "address": "192.0.2.10", "enabled": False})
        assert r.status_code == 201, r.text
        device_id = r.json()["id"]
    sql(appliance, "INSERT INTO probe_state (device_id, status, since, polled_at, latency_ms) VALUES (?, 'up', ?, ?, 12.9)",
        (device_id, time.time(), time.time()))
    return device_id


def test_every_role_sees_exactly_the_parts_its_permissions_allow(shared_appliance):
    _add_role_users(shared_appliance)
    device_id = _device_with_probe_status(shared_appliance)
    parts = _parts(shared_appliance, device_id)
    wrong = []
    for role in ROLES:
        key = make_key(shared_appliance, _username(role), role)
        with shared_appliance.client(follow_redirects=False) as client, api(shared_appliance, key) as machine:
            assert do_login(client, username=_username(role)).status_code == 303, role
            pages = {}
            for path, marker, permission in parts:
                if path not in pages:
                    r = client.get(path)
                    assert r.status_code == 200, (role, path, r.status_code)
                    pages[path] = r.text
                shown = re.search(marker, pages[path]) is not None
                if shown != allowed(role, permission):
                    wrong.append(f"{role} {'sees' if shown else 'misses'} {marker!r} on {path} ({permission})")
            for how, path, permission in FRAGMENTS:
                r = (client if how == "browser" else machine).get(path, headers={"HX-Request": "true"})
                if (r.status_code == 200) != allowed(role, permission):
                    wrong.append(f"{role} got {r.status_code} for {how} {path} ({permission})")
    assert not wrong, "\n".join(wrong)
