"""ACL-4 and ACL-1: headers on every route, CSRF/Origin, Host allow list, body limits, guards.

Guards and CSRF are checked in process, through the whole served stack (`asgi_client`: the
security layer, Litestar, the guards) on a fresh database per test. What depends on the real
listener (headers on every route as served, Host, body limits while reading, malformed HTTP)
runs against one real server shared by the module (`shared_appliance`): none of those tests
changes what the others see."""

import socket
import ssl
import time

import pytest
from litestar import get

from appliance import app as app_mod
from appliance import config
from appliance.clock import FrozenClock
from appliance.web import create_app, guards
from tests.conftest import csrf_of, do_login

REQUIRED = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "strict-transport-security": "max-age=",
}


@pytest.fixture(scope="module")
def route_table(tmp_path_factory):
    data = tmp_path_factory.mktemp("routes") / "data"
    services = app_mod.build(config.with_data_dir(config.Config(), str(data)), FrozenClock())
    try:
        yield create_app(services)
    finally:
        services.close()


def _get_paths(app):
    paths = []
    for route in app.routes:
        if "{" in route.path:
            paths.append(route.path.replace("{file_path:path}", "app.css"))
        elif "GET" in getattr(route, "methods", {"GET"}):
            paths.append(route.path)
    return sorted(set(paths))


def test_every_route_declares_exactly_one_access_guard(route_table):
    undeclared = []
    for route in route_table.routes:
        for handler in route.route_handlers:
            if handler.handler_name == "options_handler":
                continue  # Litestar's automatic OPTIONS: closed by deny_undeclared (tested below)
            if len(guards.access_kinds(handler)) != 1:
                undeclared.append(f"{route.path} -> {handler.handler_name}")
    assert not undeclared, f"routes without exactly one access guard: {undeclared}"


def test_undeclared_route_is_denied_by_default(tmp_path):
    @get("/forgot-a-guard", name="forgot")
    async def forgot() -> str:
        return "should never be served"

    services = app_mod.build(config.with_data_dir(config.Config(), str(tmp_path / "d")), FrozenClock())
    try:
        app = create_app(services)
        app.register(forgot)
        from litestar.testing import TestClient
        with TestClient(app, base_url="https://outpost.local") as client:
            r = client.get("/forgot-a-guard")
            assert r.status_code == 403 and "should never" not in r.text
    finally:
        services.close()


def test_automatic_options_handlers_are_closed(asgi_client):
    c = asgi_client
    assert c.options("/login").status_code == 403


def _assert_headers(r, path):
    for name, value in REQUIRED.items():
        assert value in r.headers.get(name, ""), f"{path}: {name} missing or wrong"
    assert "server" not in r.headers, f"{path}: Server header present"
    if not path.startswith("/static/"):
        assert r.headers.get("cache-control") == "no-store", f"{path}: not no-store"


def test_security_headers_on_every_route(shared_appliance, shared_admin_client, route_table):
    admin_client = shared_admin_client
    paths = _get_paths(route_table) + ["/nonexistent", "/static/vendor/htmx.min.js"]
    with shared_appliance.client(follow_redirects=False) as anon:
        for path in paths:
            _assert_headers(anon.get(path), path)
            _assert_headers(admin_client.get(path), path)
    _assert_headers(admin_client.post("/logout", data={}), "/logout (refused)")


@pytest.mark.parametrize("headers, reason", [
    ({"Origin": "https://evil.example"}, "foreign Origin"),
    ({"Origin": None, "Sec-Fetch-Site": "cross-site"}, "cross-site"),
    ({"Origin": None}, "missing Origin"),
    ({"Origin": "http://localhost"}, "foreign Origin"),
])
def test_cross_site_post_is_refused(asgi_admin_client, headers, reason):
    admin_client = asgi_admin_client
    token = csrf_of(admin_client.get("/dashboard").text)
    sent = {k: v for k, v in headers.items() if v is not None}
    request = admin_client.build_request("POST", "/logout", data={"_csrf": token}, headers=sent)
    for k, v in headers.items():
        if v is None:
            del request.headers[k]
    r = admin_client.send(request)
    assert r.status_code == 403
    assert admin_client.get("/dashboard").status_code == 200, "the session must survive a refused logout"
    log = admin_client.get("/audit", params={"action": "access.csrf.denied"}).text
    assert reason in log


def test_post_without_or_with_wrong_token_is_refused(asgi_admin_client):
    admin_client = asgi_admin_client
    assert admin_client.post("/logout", data={}).status_code == 403
    assert admin_client.post("/logout", data={"_csrf": "x" * 43}).status_code == 403
    assert admin_client.post("/logout", headers={"X-CSRF-Token": "nope"}).status_code == 403
    assert admin_client.get("/dashboard").status_code == 200


def test_login_form_needs_the_pre_session_token(asgi_admin_client, asgi_client):
    fresh = asgi_client
    r = fresh.post("/login", data={"username": "admin", "password": "x"})
    assert r.status_code == 403


def test_unknown_host_is_refused(shared_appliance):
    with shared_appliance.client() as c:
        r = c.get("/login", headers={"Host": "attacker.example"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_host"
        assert c.get("/login", headers={"Host": f"127.0.0.1:{shared_appliance.port}"}).status_code in (200, 303)


def test_oversized_body_is_refused_before_reading(shared_admin_client):
    admin_client = shared_admin_client
    big = "x" * (2 * 1024 * 1024)
    token = csrf_of(admin_client.get("/dashboard").text)
    r = admin_client.post("/logout", data={"_csrf": token, "pad": big})
    assert r.status_code == 413 and "too large" in r.text
    assert admin_client.get("/dashboard").status_code == 200


def test_oversized_chunked_body_is_refused(shared_admin_client):
    admin_client = shared_admin_client
    token = csrf_of(admin_client.get("/dashboard").text)

    def chunks():
        yield f"_csrf={token}&pad=".encode()
        for _ in range(40):
            yield b"y" * 65536

    r = admin_client.post("/logout", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code in (403, 413)
    assert admin_client.get("/dashboard").status_code == 200


@pytest.mark.parametrize("body, ctype", [
    (b"\xff\xfe\x00\x01garbage", "application/x-www-form-urlencoded"),
    (b'{"username": "admin", "password": "x"}', "application/json"),
    (b"--broken\r\nContent-Disposition: form-data\r\n\r\n", "multipart/form-data; boundary=broken"),
    (b"not json at all", "application/json"),
])
def test_malformed_bodies_get_a_clear_refusal(shared_appliance, body, ctype):
    with shared_appliance.client() as c:
        c.get("/login")
        r = c.post("/login", content=body, headers={"Content-Type": ctype})
        assert 400 <= r.status_code < 500
        assert "Traceback" not in r.text and "error" in r.text.lower()
        assert c.get("/healthz").json() == {"status": "ok"}


def test_malformed_http_is_answered_and_server_survives(shared_appliance):
    appliance = shared_appliance
    ctx = ssl.create_default_context(cafile=appliance.ca)
    with socket.create_connection(("127.0.0.1", appliance.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GARBAGE / HTTP/9.9\r\n\x00\x01\r\n\r\n")
            time.sleep(0.2)
            try:
                data = tls.recv(1024)
            except (ConnectionError, ssl.SSLError):
                data = b""
            assert b"200 OK" not in data
    with appliance.client() as c:
        assert c.get("/healthz").status_code == 200


def test_json_error_shape_for_api_clients(shared_appliance):
    with shared_appliance.client() as c:
        r = c.get("/audit", headers={"Accept": "application/json"})
        assert r.status_code == 401
        assert set(r.json()["error"]) == {"code", "message", "details"}
        r = c.get("/api/v1/nothing")
        assert r.status_code == 404 and r.json()["error"]["code"] == "http_404"


def test_role_without_permission_is_denied_and_audited(services, asgi_admin_client, asgi_client):
    """A viewer cannot read the audit log (ACL-1 permission table)."""
    from appliance.auth import queries

    admin_client, database = asgi_admin_client, services.db
    viewer_hash = database.read_sync(
        lambda c: c.execute("SELECT password_hash FROM users WHERE username='admin'").fetchone()[0])
    database.write_sync(lambda c: queries.insert_user(c, username="vera", role="viewer", password_hash=viewer_hash,
                                                      must_change_password=False, now=time.time()))
    viewer = asgi_client
    assert do_login(viewer, username="vera").status_code == 303
    assert viewer.get("/dashboard").status_code == 200
    assert viewer.get("/audit").status_code == 403
    assert viewer.get("/audit/export.csv").status_code == 403
    assert "Audit log" not in viewer.get("/dashboard").text
    assert "access.denied" in admin_client.get("/audit", params={"action": "access.denied"}).text


def test_browser_null_origin_is_accepted_only_with_same_origin_fetch_metadata(asgi_client):
    """Chromium sends Origin: null on form posts from no-referrer pages; Sec-Fetch-Site decides."""
    c = asgi_client
    token = csrf_of(c.get("/setup").text)  # not set up yet: /login redirects here
    form = {"_csrf": token, "username": "nobody", "password": "wrong-password-here"}
    ok = c.post("/login", data=form, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 401, "a same-origin browser form must reach the handler"
    for extra in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {}):
        r = c.post("/login", data=form, headers={"Origin": "null", **extra})
        assert r.status_code == 403, extra

