"""API-1, ACL-2, PLAT-6 against a real server over TLS: bearer keys only, one error
shape, object-level checks, escalation refused, revocation immediate, metrics, docs."""

from __future__ import annotations

import csv
import io

import pytest

from tests.api.helpers import api, error_of, make_key, sql
from tests.conftest import ADMIN, ADMIN_PASSWORD, FAST_HASH_CONFIG

CONFIG = FAST_HASH_CONFIG + """
[access]
api_key_failures_per_minute = 8
"""


@pytest.fixture(scope="module")
def appliance_config():
    return CONFIG


@pytest.fixture(scope="module")
def admin_key(shared_appliance):
    return make_key(shared_appliance, ADMIN, "admin")


@pytest.fixture(scope="module")
def operator(shared_appliance, admin_key):
    """An operator created through the API; returns (user id, temporary password, key)."""
    appliance = shared_appliance
    with api(appliance, admin_key) as c:
        r = c.post("/api/v1/users", json={"username": "olga", "role": "operator", "password": ADMIN_PASSWORD})
        assert r.status_code == 201, r.text
        body = r.json()
    return body["user"]["id"], body["temporary_password"], make_key(appliance, "olga", "operator")


def test_key_reaches_its_role_and_write_uses_are_audited(shared_appliance, admin_key, operator):
    with api(shared_appliance, admin_key) as c:
        r = c.get("/api/v1/health")
        assert r.status_code == 200 and r.json()["version"]
        users = c.get("/api/v1/users").json()
        assert [u["username"] for u in users][:1] == ["admin"]
        r = c.get("/api/v1/audit", params={"action": "api.write", "limit": 5})
        assert r.status_code == 200
    rows = sql(shared_appliance, "SELECT actor_type, actor, outcome FROM audit_log WHERE action = 'api.write'")
    assert ("api_key", "admin", "success") in rows  # POST /api/v1/users by the operator fixture
    

def test_session_cookie_never_reaches_the_api(shared_appliance, shared_admin_client):
    r = shared_admin_client.get("/api/v1/health")
    assert r.status_code == 401 and error_of(r)["code"] == "not_authenticated"
    assert shared_admin_client.get("/dashboard").status_code == 200


def test_key_only_in_the_authorization_header(shared_appliance, admin_key):
    with api(shared_appliance) as c:
        assert c.get("/api/v1/health", params={"api_key": admin_key}).status_code == 401
        assert c.get("/api/v1/health", params={"access_token": admin_key}).status_code == 401
    with api(shared_appliance, cookies={"api_key": admin_key, "__Host-outpost": admin_key}) as c:
        assert c.get("/api/v1/health").status_code == 401
        r = c.get("/api/v1/health", headers={"Authorization": f"Token {admin_key}"})
        assert r.status_code == 401 and error_of(r)["details"]["reason"] == "scheme"
        assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("mangle, reason", [
    (lambda k: "xx" + k[2:], "prefix"),
    (lambda k: k[:-1], "length"),
    (lambda k: k + "A", "length"),
    (lambda k: k[:3] + "Z" + k[4:], "format"),
    (lambda k: k[:-2] + ("AA" if k[-2:] != "AA" else "BB"), "unknown"),
    (lambda k: k[:3] + "0123456789ab" + k[15:], "unknown"),
])
def test_bad_keys_get_401_with_the_reason(shared_appliance, admin_key, mangle, reason):
    with api(shared_appliance, mangle(admin_key), local_address="127.0.0.4") as c:
        r = c.get("/api/v1/health")
    assert r.status_code == 401
    err = error_of(r)
    assert err["code"] == "invalid_api_key" and err["details"]["reason"] == reason
    assert admin_key[15:] not in r.text
    log = sql(shared_appliance, "SELECT details FROM audit_log WHERE action = 'apikey.auth.failure'")
    assert all(admin_key[16:] not in d for (d,) in log), "the secret never reaches the audit log"


def test_failed_key_attempts_are_throttled_per_address(shared_appliance, admin_key):
    with api(shared_appliance, "op_000000000000_" + "A" * 43, local_address="127.0.0.3") as bad:
        codes = [bad.get("/api/v1/health").status_code for _ in range(10)]
    assert codes[:8] == [401] * 8 and codes[8:] == [429, 429]
    with api(shared_appliance, "op_000000000000_" + "A" * 43, local_address="127.0.0.3") as bad:
        r = bad.get("/api/v1/health")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    with api(shared_appliance, admin_key, local_address="127.0.0.3") as c:
        assert c.get("/api/v1/health").status_code == 200, "a valid key works from a throttled address"
    with api(shared_appliance, admin_key) as other:
        assert other.get("/api/v1/health").status_code == 200, "other addresses are unaffected"


def test_form_bodies_are_refused_with_415(shared_appliance, admin_key):
    with api(shared_appliance, admin_key) as c:
        r = c.post("/api/v1/users", data={"username": "formy", "role": "viewer"})
        assert r.status_code == 415 and error_of(r)["code"] == "unsupported_media_type"
        r = c.post("/api/v1/users", content=b"username=x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = c.post("/api/v1/users", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and error_of(r)["code"].startswith("http_400")
    assert not sql(shared_appliance, "SELECT id FROM users WHERE username = 'formy'")


def test_validation_errors_name_the_field(shared_appliance, admin_key):
    with api(shared_appliance, admin_key) as c:
        r = c.post("/api/v1/users", json={"username": "x" * 65, "role": "viewer"})
        assert r.status_code == 400
        r = c.post("/api/v1/users", json={"username": "ok-name", "role": "root"})
        assert r.status_code == 400
        r = c.get("/api/v1/audit", params={"limit": 501})
        assert r.status_code == 400
        r = c.get("/api/v1/audit", params={"since": "yesterday"})
        assert r.status_code == 400 and "since" in error_of(r)["details"]


def test_operator_cannot_mint_an_admin_or_auditor_key(shared_appliance, operator):
    _, password, key = operator
    with api(shared_appliance, key) as c:
        for role in ("admin", "auditor"):
            r = c.post("/api/v1/api-keys", json={"name": "escalate", "role": role, "password": password})
            assert r.status_code == 403, r.text
            assert error_of(r)["code"] == "role_not_allowed"
        r = c.post("/api/v1/api-keys", json={"name": "no step-up", "role": "viewer", "password": "wrong password!"})
        assert r.status_code == 400 and "password" in error_of(r)["details"]
        r = c.post("/api/v1/api-keys", json={"name": "fine", "role": "viewer", "password": password})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["api_key"].startswith(f"op_{created['key']['id']}_") and created["key"]["role"] == "viewer"
        assert c.get(f"/api/v1/api-keys/{created['key']['id']}").json()["state"] == "active"
    rows = sql(shared_appliance, "SELECT outcome FROM audit_log WHERE action = 'apikey.create' AND actor = 'olga'")
    assert rows.count(("denied",)) == 2 and ("success",) in rows


def test_viewer_key_cannot_reach_admin_resources(shared_appliance, admin_key):
    with api(shared_appliance, admin_key) as c:
        assert c.post("/api/v1/users", json={"username": "vic", "role": "viewer",
                                             "password": ADMIN_PASSWORD}).status_code == 201
    key = make_key(shared_appliance, "vic", "viewer")
    with api(shared_appliance, key) as c:
        assert c.get("/api/v1/health").status_code == 200
        for method, path in [("GET", "/api/v1/users"), ("POST", "/api/v1/users"), ("GET", "/api/v1/audit"),
                             ("GET", "/api/v1/settings"), ("PUT", "/api/v1/settings/ip-allowlist"),
                             ("GET", "/api/v1/api-keys?all=true"), ("GET", "/api/v1/users/1")]:
            r = c.request(method, path, json={} if method in ("POST", "PUT") else None)
            assert r.status_code in (403, 404), (method, path, r.status_code)
            error_of(r)


def test_user_cannot_see_or_revoke_another_users_key(shared_appliance, admin_key, operator):
    with api(shared_appliance, admin_key) as admin:
        mine = admin.get("/api/v1/api-keys").json()
        admin_key_id = next(k["id"] for k in mine if admin_key.startswith(k["prefix"]))
    _, _, op_key = operator
    with api(shared_appliance, op_key) as c:
        assert c.get(f"/api/v1/api-keys/{admin_key_id}").status_code == 404
        r = c.delete(f"/api/v1/api-keys/{admin_key_id}")
        assert r.status_code == 404 and error_of(r)["code"] == "not_found"
        assert all(k["owner"] == "olga" for k in c.get("/api/v1/api-keys").json())
        assert c.get("/api/v1/api-keys", params={"all": "true"}).status_code == 403
    with api(shared_appliance, admin_key) as admin:
        assert admin.get("/api/v1/health").status_code == 200, "the admin's key still works"
        assert {k["owner"] for k in admin.get("/api/v1/api-keys", params={"all": "true"}).json()} >= {"admin", "olga"}
    assert sql(shared_appliance, "SELECT outcome FROM audit_log WHERE action = 'apikey.revoke' AND target = ?",
               (f"apikey:{admin_key_id}",)) == [("denied",)]


def test_revoked_key_fails_on_the_very_next_request(shared_appliance, admin_key):
    key = make_key(shared_appliance, ADMIN, "viewer")
    key_id = key[3:15]
    with api(shared_appliance, key) as c:
        assert c.get("/api/v1/health").status_code == 200
        with api(shared_appliance, admin_key) as admin:
            r = admin.delete(f"/api/v1/api-keys/{key_id}")
            assert r.status_code == 200 and r.json()["state"] == "revoked"
        r = c.get("/api/v1/health")
        assert r.status_code == 401 and error_of(r)["details"]["reason"] == "revoked"


def test_expired_key_and_disabled_owner_fail(shared_appliance, admin_key):
    key = make_key(shared_appliance, ADMIN, "viewer")
    sql(shared_appliance, "UPDATE api_keys SET expires_at = 1 WHERE id = ?", (key[3:15],))
    with api(shared_appliance, key) as c:
        r = c.get("/api/v1/health")
        assert r.status_code == 401 and error_of(r)["details"]["reason"] == "expired"


def test_last_used_time_and_address_are_recorded(shared_appliance, admin_key):
    key = make_key(shared_appliance, ADMIN, "viewer")
    with api(shared_appliance, key, local_address="127.0.0.5") as c:
        assert c.get("/api/v1/health").status_code == 200
    with api(shared_appliance, admin_key) as admin:
        listed = {k["id"]: k for k in admin.get("/api/v1/api-keys").json()}
    assert listed[key[3:15]]["last_used_ip"] == "127.0.0.5" and listed[key[3:15]]["last_used_at"]
    stored = sql(shared_appliance, "SELECT secret_mac FROM api_keys WHERE id = ?", (key[3:15],))[0][0]
    assert key.encode() not in bytes(stored) and len(stored) == 32


def test_audit_pagination_and_export(shared_appliance, admin_key):
    with api(shared_appliance, admin_key) as c:
        first = c.get("/api/v1/audit", params={"limit": 3}).json()
        assert len(first["items"]) == 3 and first["next_cursor"] == first["items"][-1]["seq"]
        second = c.get("/api/v1/audit", params={"limit": 3, "cursor": first["next_cursor"]}).json()
        assert second["items"][0]["seq"] < first["items"][-1]["seq"]
        r = c.get("/api/v1/audit/export", params={"format": "csv", "action": "apikey"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(r.text)))
        assert rows[0][0] == "seq" and all(row[3].startswith("apikey.") for row in rows[1:])
        r = c.get("/api/v1/audit/export", params={"format": "jsonl", "limit": "x"})
        assert r.status_code == 200
        assert c.get("/api/v1/audit/export", params={"format": "xml"}).status_code == 400
    assert sql(shared_appliance, "SELECT actor_type FROM audit_log WHERE action = 'audit.export'")[-1] == ("api_key",)


def test_metrics_need_a_key(shared_appliance, shared_admin_client, admin_key):
    with api(shared_appliance) as anon:
        assert anon.get("/metrics").status_code == 401
    assert shared_admin_client.get("/metrics").status_code == 401, "the session cookie is not enough"
    viewer = make_key(shared_appliance, ADMIN, "viewer")
    with api(shared_appliance, viewer) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {line.split("{")[0].split(" ")[0] for line in r.text.splitlines() if line and not line.startswith("#")}
    assert {"outpost_uptime_seconds", "outpost_cpu_percent", "outpost_memory_percent", "outpost_disk_used_bytes",
            "outpost_database_bytes", "outpost_certificate_expiry_timestamp_seconds", "outpost_info",
            "outpost_audit_records"} <= names
    assert 'outpost_info{version="' in r.text


def test_openapi_and_docs_are_local(shared_appliance):
    with api(shared_appliance) as c:
        doc = c.get("/api/v1/openapi.json")
        assert doc.status_code == 200
        spec = doc.json()
        assert spec["openapi"].startswith("3.1") and all(p.startswith("/api/v1/") for p in spec["paths"])
        assert {"/api/v1/users", "/api/v1/sessions", "/api/v1/api-keys", "/api/v1/settings", "/api/v1/audit",
                "/api/v1/health"} <= set(spec["paths"])
        page = c.get("/api/v1/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/api/v1/api-keys" in page.text and "ErrorBody" in page.text
    assert "http://" not in page.text and "https://" not in page.text and "<script>" not in page.text
    assert "style=" not in page.text


def test_login_report_api(shared_appliance, admin_key):
    with api(shared_appliance, admin_key) as c:
        r = c.get("/api/v1/audit/logins")
        assert r.status_code == 200
        body = r.json()
        assert any(u["key"] == "admin" and u["successes"] >= 1 for u in body["by_user"])
        assert c.get("/api/v1/audit/logins", params={"since": "2026-01-02", "until": "2026-01-01"}).status_code == 400


def test_sessions_and_settings_resources(shared_appliance, shared_admin_client, admin_key, operator):
    operator_id, _, op_key = operator
    with api(shared_appliance, admin_key) as admin:
        sessions = admin.get("/api/v1/sessions", params={"all": "true"}).json()
        assert any(s["username"] == "admin" and s["handle"] for s in sessions)
        admin_handle = next(s["handle"] for s in sessions if s["username"] == "admin")
        settings = admin.get("/api/v1/settings").json()
        assert set(settings) == {"security", "ip_allowlist"} and settings["ip_allowlist"] == []
        policy = dict(settings["security"], lockout_threshold=12, password=ADMIN_PASSWORD)
        r = admin.put("/api/v1/settings/security", json=policy)
        assert r.status_code == 200 and r.json()["lockout_threshold"] == 12
        r = admin.put("/api/v1/settings/security", json=dict(policy, session_idle_minutes=99))
        assert r.status_code == 400 and "session_idle_minutes" in error_of(r)["details"]
    with api(shared_appliance, op_key) as op:
        assert op.get("/api/v1/sessions").json() == [], "the operator has no browser session"
        assert op.get("/api/v1/sessions", params={"user_id": 1}).status_code == 404, "no one else's list by id"
        assert op.get("/api/v1/sessions", params={"all": "true"}).status_code == 403
        assert op.delete(f"/api/v1/sessions/{admin_handle}").status_code == 404
        assert op.get(f"/api/v1/users/{operator_id}").json()["username"] == "olga"
        assert op.get("/api/v1/users/1").status_code == 404
    assert shared_admin_client.get("/dashboard").status_code == 200, "the admin's session survived"
    rows = sql(shared_appliance, "SELECT actor_type FROM audit_log WHERE action = 'policy.security.update'")
    assert rows, "the policy change was audited"


def test_metrics_text_format_and_registry():
    from appliance.web.api.metrics import render

    text = render([("a_total", "counter", "A \\ thing\nnew", {"x": 'q"t'}, 3),
                   ("a_total", "counter", "ignored", {"x": "b"}, 4.5),
                   ("b", "gauge", "B", {}, float("nan"))])
    assert text.splitlines() == ["# HELP a_total A \\\\ thing\\nnew", "# TYPE a_total counter",
                                 'a_total{x="q\\"t"} 3', 'a_total{x="b"} 4.5', "# HELP b B", "# TYPE b gauge",
                                 "b NaN"]
