"""ACL-3: the IP allow list, parsed strictly, enforced before authentication for UI,
API and metrics, with a self-lockout guard and a local CLI reset. Two loopback source
addresses (127.0.0.1 allowed, 127.0.0.2 refused) show allow and deny on a real server."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from appliance.access.allowlist import contains, parse_networks
from appliance.errors import ValidationError
from tests.api.helpers import api, error_of, make_key, sql
from tests.conftest import ADMIN, ROOT, csrf_of, wait_until


@pytest.mark.parametrize("line, problem", [
    ("10.0.0.0/33", "not an IPv4 or IPv6"),
    ("300.1.1.1", "not an IPv4 or IPv6"),
    ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
    ("2001:db8::1/32", "did you mean 2001:db8::/32"),
    ("example.com", "not an IPv4 or IPv6"),
    ("10.0.0.0/8; drop", "not an IPv4 or IPv6"),
    ("1" * 100, "Far too long"),
])
def test_malformed_entries_are_named(line, problem):
    with pytest.raises(ValidationError) as err:
        parse_networks(["192.0.2.0/24", line])
    assert problem in err.value.message and "line 2" in err.value.details


def test_parse_and_contains_v4_v6():
    nets = parse_networks(["  10.0.0.0/8 ", "", "2001:db8::/32", "192.0.2.7", "10.0.0.0/8"])
    assert [str(n) for n in nets] == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
    assert contains(nets, "10.1.2.3") and contains(nets, "2001:db8::5") and contains(nets, "192.0.2.7")
    assert contains(nets, "::ffff:10.9.9.9"), "v4-mapped v6 peers match their v4 network"
    assert not contains(nets, "192.0.2.8") and not contains(nets, "2001:db9::1") and not contains(nets, "unknown")
    assert contains([], "203.0.113.9"), "empty list: everyone"
    with pytest.raises(ValidationError, match="At most 256"):
        parse_networks([f"10.0.{i // 256}.{i % 256}" for i in range(300)])


@pytest.fixture(scope="module")
def admin_key(shared_appliance):
    return make_key(shared_appliance, ADMIN, "admin")


def _from(appliance, address: str, **kw) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address, verify=appliance.tls())
    return httpx.Client(base_url=appliance.url, transport=transport, timeout=30, **kw)


def _status(client: httpx.Client, path: str) -> int | None:
    """The status, or None when the connection is refused (outside the allow list)."""
    try:
        return client.get(path).status_code
    except httpx.ConnectError:
        return None


def test_allow_list_from_the_ui_refuses_self_lockout_and_bad_cidr(shared_appliance, shared_admin_client):
    page = shared_admin_client.get("/settings/allowlist")
    assert page.status_code == 200 and "127.0.0.1" in page.text
    token = csrf_of(page.text)
    r = shared_admin_client.post("/settings/allowlist", data={"_csrf": token, "networks": "192.0.2.0/24"})
    assert r.status_code == 400 and "lock you out" in r.text and 'aria-invalid="true"' in r.text
    assert "192.0.2.0/24" in r.text, "the typed list is kept for correction"
    r = shared_admin_client.post("/settings/allowlist", data={"_csrf": token, "networks": "127.0.0.1/32\n10.0.0.0/33"})
    assert r.status_code == 400 and "line 2" in r.text
    assert sql(shared_appliance, "SELECT value FROM settings WHERE key = 'access.ip_allowlist'") == []
    with _from(shared_appliance, "127.0.0.2") as other:
        assert other.get("/login").status_code in (200, 303), "nothing was saved"


def test_allow_and_deny_by_source_address_then_cli_reset(shared_appliance, shared_admin_client, admin_key):
    with api(shared_appliance, admin_key) as c:
        r = c.put("/api/v1/settings/ip-allowlist", json={"networks": ["10.0.0.0/8"]})
        assert r.status_code == 400 and error_of(r)["code"] == "allowlist_self_lockout"
        r = c.put("/api/v1/settings/ip-allowlist", json={"networks": ["127.0.0.1/32", "::1/128"]})
        assert r.status_code == 200 and r.json()["networks"] == ["127.0.0.1/32", "::1/128"]
    # 127.0.0.1 still gets everything; 127.0.0.2 is refused before authentication, everywhere:
    # its connections are closed as they are accepted, before TLS (issue 11, finding 1).
    assert shared_admin_client.get("/dashboard").status_code == 200
    with _from(shared_appliance, "127.0.0.2") as other:
        for path in ("/login", "/dashboard", "/static/app.css", "/api/v1/health", "/metrics", "/healthz"):
            with pytest.raises(httpx.ConnectError):
                other.get(path, headers={"Authorization": f"Bearer {admin_key}"})
    rows = sql(shared_appliance, "SELECT actor_type, details FROM audit_log WHERE action = 'access.allowlist.update'")
    assert rows[-1][0] == "api_key" and "127.0.0.1/32" in rows[-1][1]
    cmd = [sys.executable, "-m", "appliance", "allowlist", "show", "--data-dir", str(shared_appliance.data_dir)]
    root = ["--allow-root"] if os.geteuid() == 0 else []
    shown = subprocess.run(cmd + root, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "127.0.0.1/32" in shown.stdout
    cmd[4] = "reset"
    reset = subprocess.run(cmd + root, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert reset.returncode == 0 and "cleared (2 entries removed)" in reset.stdout
    with _from(shared_appliance, "127.0.0.2") as other:
        assert wait_until(lambda: _status(other, "/login") not in (None, 403), 8.0, interval=0.25), \
            "the running server picks the reset up"
    resets = sql(shared_appliance, "SELECT actor_type, actor FROM audit_log WHERE action = 'access.allowlist.reset'")
    assert resets[-1][0] == "system"


def test_trusted_proxy_forwarded_address_is_ignored_from_untrusted_peer(shared_appliance, admin_key):
    with api(shared_appliance, admin_key) as c:
        assert c.put("/api/v1/settings/ip-allowlist", json={"networks": ["127.0.0.1/32"]}).status_code == 200
    try:
        with _from(shared_appliance, "127.0.0.2") as other, pytest.raises(httpx.ConnectError):
            other.get("/login", headers={"X-Forwarded-For": "127.0.0.1"})  # believed only from [web] trusted_proxies
    finally:
        with api(shared_appliance, admin_key) as c:
            assert c.put("/api/v1/settings/ip-allowlist", json={"networks": []}).json() == {"networks": []}
