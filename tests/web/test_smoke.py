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
