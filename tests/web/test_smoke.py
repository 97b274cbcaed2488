"""Setup, sign-in, dashboard, audit and sign-out against the real server over TLS."""

from tests.conftest import csrf_of, do_login


def test_setup_login_dashboard_audit_logout(appliance, admin_client):
    dash = admin_client.get("/dashboard")
    assert dash.status_code == 200 and "Data disk" in dash.text
    audit = admin_client.get("/audit", params={"action": "auth"})
    assert "auth.login.success" in audit.text
    export = admin_client.get("/audit/export.csv")
    assert export.status_code == 200 and export.text.startswith("seq,time_utc")
    r = admin_client.post("/logout", data={"_csrf": csrf_of(dash.text)})
    assert r.status_code == 303
    assert admin_client.get("/dashboard").status_code == 303


def test_about_shows_fingerprints_and_licences(shared_appliance, shared_admin_client):
    about = shared_admin_client.get("/about").text
    banner = shared_appliance.output()
    ca_fp = banner.split("local CA (SHA-256):", 1)[1].split()[0]
    leaf_fp = banner.split("server cert (SHA-256):", 1)[1].split()[0]
    assert ca_fp in about and leaf_fp in about
    assert "litestar" in about and "htmx.org (npm)" in about and "0BSD" in about


def test_health_json_and_healthz(shared_appliance, shared_admin_client):
    health = shared_admin_client.get("/dashboard/health.json").json()
    assert health["version"] and 0 <= health["disk_percent"] <= 100 and health["database_bytes"] > 0
    assert 80 < health["cert_days_left"] <= 90
    with shared_appliance.client() as anon:
        assert anon.get("/healthz").json() == {"status": "ok"}
        assert anon.get("/dashboard/health.json").status_code == 303
