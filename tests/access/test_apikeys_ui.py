"""ACL-2 and AUTH-8 in the browser UI (real server): create with step-up, shown once,
listed without the secret, revoked with immediate effect; inline errors."""

from __future__ import annotations

import re

from tests.api.helpers import api, error_of, sql
from tests.conftest import ADMIN_PASSWORD, csrf_of


def test_create_show_once_use_and_revoke(appliance, admin_client):
    page = admin_client.get("/api-keys")
    assert page.status_code == 200 and "No keys." in page.text
    form = admin_client.get("/api-keys/new")
    assert form.status_code == 200, "a fresh sign-in counts as recent authentication"
    token = csrf_of(form.text)
    bad = admin_client.post("/api-keys/new", data={"_csrf": token, "name": "", "role": "root", "expires_days": "999"})
    assert bad.status_code == 400 and bad.text.count('class="error"') == 3
    created = admin_client.post("/api-keys/new", data={"_csrf": token, "name": "nightly <script>", "role": "viewer",
                                                       "expires_days": "7"})
    assert created.status_code == 201
    key = re.search(r'value="(op_[0-9a-f]{12}_[A-Za-z0-9_-]{43})"', created.text).group(1)
    assert "nightly &lt;script&gt;" in created.text
    listing = admin_client.get("/api-keys").text
    assert key[:16] in listing and key[16:] not in listing, "the secret is never shown again"
    with api(appliance, key) as c:
        assert c.get("/api/v1/health").status_code == 200
        revoke = admin_client.post(f"/api-keys/{key[3:15]}/revoke", data={"_csrf": csrf_of(listing)})
        assert revoke.status_code == 303
        r = c.get("/api/v1/health")
        assert r.status_code == 401 and error_of(r)["details"]["reason"] == "revoked"
    assert "revoked" in admin_client.get("/api-keys").text


def test_creation_needs_a_recent_reauthentication(appliance, admin_client):
    sql(appliance, "UPDATE sessions SET recent_auth = 0")
    r = admin_client.get("/api-keys/new")
    assert r.status_code == 303 and r.headers["location"].startswith("/reauth?next=")
    token = csrf_of(admin_client.get("/api-keys").text)
    r = admin_client.post("/api-keys/new", data={"_csrf": token, "name": "x", "role": "viewer", "expires_days": "7"})
    assert r.status_code == 303 and r.headers["location"].startswith("/reauth")
    assert sql(appliance, "SELECT count(*) FROM api_keys") == [(0,)]
    page = admin_client.get("/reauth?next=/api-keys/new")
    r = admin_client.post("/reauth", data={"_csrf": csrf_of(page.text), "secret": ADMIN_PASSWORD, "next": "/api-keys/new"})
    assert r.status_code == 303
    assert admin_client.get("/api-keys/new").status_code == 200
