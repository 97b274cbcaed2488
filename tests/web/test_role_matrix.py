"""ACL-1: every browser route, signed in as each role, answers exactly as the permission table says.

Routes come from the live route table (nothing listed by hand); a route guarded by
permission("x") must be refused (403) to roles without "x" and served to roles with it.
Routes with path parameters are covered by the object-level tests; /api/ and /metrics
take API keys and are covered by tests/access and tests/api."""

import time

import pytest

from appliance import app as app_mod
from appliance import config
from appliance.app import open_database
from appliance.auth import queries
from appliance.auth.permissions import ROLES, allowed
from appliance.clock import FrozenClock
from appliance.web import create_app, guards
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


def test_every_role_gets_exactly_its_permissions(appliance, admin_client, tmp_path):
    routes = _browser_get_routes(tmp_path / "routes")
    assert len(routes) > 10
    database, _ = open_database(appliance.data_dir, readers=1)
    try:
        password_hash = database.read_sync(
            lambda c: c.execute("SELECT password_hash FROM users WHERE username = 'admin'").fetchone()[0])
        for role in ROLES:
            if role != "admin":
                database.write_sync(lambda c, role=role: queries.insert_user(
                    c, username=f"matrix-{role}", role=role, password_hash=password_hash,
                    must_change_password=False, now=time.time()))
    finally:
        database.close()
    wrong, refused = [], {role: 0 for role in ROLES}
    for role in ROLES:
        username = "admin" if role == "admin" else f"matrix-{role}"
        with appliance.client(follow_redirects=False) as client:
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
def test_roles_exist_as_data(appliance, role):
    database, _ = open_database(appliance.data_dir, readers=1)
    try:
        assert database.read_sync(lambda c: c.execute("SELECT count(*) FROM roles WHERE name = ?", (role,)).fetchone()[0]) == 1
    finally:
        database.close()
