"""Accounts over real HTTPS (ACL-1, AUTH-3..7): users pages, forced change, object-level
checks, security policy form, 2FA pages, oversized input. One server for the module."""

import re
import subprocess

import pytest

from tests.auth.webusers import NEW, create_user, signed_in, user_id
from tests.conftest import ADMIN_PASSWORD, FAST_HASH_CONFIG, csrf_of, do_login, require_tool

@pytest.fixture(scope="module")
def appliance_config():
    # many sign-ins from 127.0.0.1 in one module: raise the per-address limit (tested in process)
    return FAST_HASH_CONFIG + "login_attempts_per_minute = 500\n"


@pytest.fixture
def admin(shared_appliance):
    """A new admin sign-in on the module's server for each test (tests here revoke sessions)."""
    with shared_appliance.client() as c:
        assert do_login(c).status_code == 303
        yield c


def test_forced_change_blocks_everything_but_the_change_page(shared_appliance, admin):
    temp = create_user(admin, "fiona")
    assert temp not in admin.get("/users").text, "the temporary password is shown once"
    with shared_appliance.client() as c:
        do_login(c, "fiona", temp)
        for path in ("/dashboard", "/account", "/account/sessions", "/audit"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/account/password", path
        assert c.get("/static/app.css").status_code == 200
        page = c.get("/account/password")
        r = c.post("/account/password", data={"_csrf": csrf_of(page.text), "current": temp,
                                              "new": "Password1!Password1!", "confirm": "Password1!Password1!"})
        assert r.status_code == 400 and "commonly used" in r.text and 'aria-invalid="true"' in r.text
        r = c.post("/account/password", data={"_csrf": csrf_of(page.text), "current": temp,
                                              "new": "fiona in the outpost office", "confirm": "fiona in the outpost office"})
        assert "product name" in r.text and "username" in r.text
        r = c.post("/account/password", data={"_csrf": csrf_of(page.text), "current": temp, "new": NEW, "confirm": NEW})
        assert r.status_code == 303
        assert c.get("/dashboard").status_code == 200
        assert c.post("/logout", data={"_csrf": csrf_of(c.get("/account").text)}).status_code == 303


def test_role_escalation_and_crafted_ids_are_refused(shared_appliance, admin):
    victim_handle = re.search(r'/account/sessions/([^/"]+)/revoke', admin.get("/account/sessions").text).group(1)
    temp = create_user(admin, "victor")
    with signed_in(shared_appliance, "victor", temp) as v:
        token = csrf_of(v.get("/account").text)
        admin_id = user_id(admin, "admin")
        assert v.get("/users").status_code == 403
        assert v.get(f"/users/{admin_id}").status_code == 403
        assert v.post("/users", data={"_csrf": token, "username": "mallory", "role": "admin"}).status_code == 403
        vid = user_id(admin, "victor")
        assert v.post(f"/users/{vid}/role", data={"_csrf": token, "role": "admin"}).status_code == 403
        assert v.get("/settings/security").status_code == 403
        r = v.post(f"/account/sessions/{victim_handle}/revoke", data={"_csrf": token})
        assert r.status_code == 404, "another user's session looks absent"
        assert admin.get("/account/sessions").status_code == 200, "the admin's session survived"
        assert "victor (viewer)" in v.get("/account").text


def test_admin_changes_revoke_sessions_and_last_admin_is_kept(shared_appliance, admin):
    temp = create_user(admin, "wendy", "operator")
    with signed_in(shared_appliance, "wendy", temp) as w:
        wid = user_id(admin, "wendy")
        token = csrf_of(admin.get(f"/users/{wid}").text)
        assert "Signed in" in admin.get(f"/users/{wid}").text
        assert admin.post(f"/users/{wid}/disable", data={"_csrf": token}).status_code == 303
        assert w.get("/dashboard").status_code == 303, "disabled: the session is gone"
    assert admin.post(f"/users/{wid}/enable", data={"_csrf": token}).status_code == 303
    r = admin.post(f"/users/{wid}/reset-password", data={"_csrf": token})
    assert r.status_code == 200 and 'id="temporary-password"' in r.text
    aid = user_id(admin, "admin")
    r = admin.post(f"/users/{aid}/role", data={"_csrf": token, "role": "viewer"})
    assert r.status_code == 409 and "last active administrator" in r.text
    r = admin.post(f"/users/{aid}/role", data={"_csrf": token, "role": "superuser"})
    assert r.status_code == 400
    assert admin.get("/users/99999").status_code == 404
    log = admin.get("/audit", params={"action": "user."}).text
    assert "user.disable" in log and "user.password.reset" in log and temp not in log


def test_oversized_and_malformed_fields(shared_appliance, admin):
    token = csrf_of(admin.get("/users").text)
    r = admin.post("/users", data={"_csrf": token, "username": "u" * 5000, "role": "viewer"})
    assert r.status_code == 400 and "Far too long" in r.text
    r = admin.post("/users", data={"_csrf": token, "username": "bad name!", "role": "viewer"})
    assert r.status_code == 400 and "letters, digits" in r.text
    r = admin.post("/account/password", data={"_csrf": token, "current": "x" * 5000, "new": "y", "confirm": "y"})
    assert r.status_code == 400
    assert admin.get("/dashboard").status_code == 200, "nothing lost: still signed in"


def test_security_policy_form(shared_appliance, admin):
    page = admin.get("/settings/security")
    assert page.status_code == 200 and 'name="session_idle_minutes"' in page.text
    token = csrf_of(page.text)
    bad = {"_csrf": token, "password_min_length": "7", "password_history": "x", "totp_policy": "sometimes",
           "session_idle_minutes": "61", "lockout_threshold": "10", "lockout_minutes": "15"}
    r = admin.post("/settings/security", data=bad)
    assert r.status_code == 400 and r.text.count('class="error"') == 4
    good = bad | {"password_min_length": "16", "password_history": "5", "totp_policy": "optional",
                  "session_idle_minutes": "30", "require_composition": "on"}
    r = admin.post("/settings/security", data=good)
    assert r.status_code == 303
    assert 'value="30"' in admin.get("/settings/security").text
    assert "policy.security.update" in admin.get("/audit", params={"action": "policy"}).text
    admin.post("/settings/security", data=good | {"require_composition": "", "password_min_length": "15",
                                                   "session_idle_minutes": "15"})


def test_totp_over_http_with_replay_refused(shared_appliance, admin):
    require_tool("oathtool")
    temp = create_user(admin, "tina")
    with signed_in(shared_appliance, "tina", temp) as t:
        t.post("/account/2fa/start", data={"_csrf": csrf_of(t.get("/account").text)})
        page = t.get("/account/2fa").text
        assert "<svg" in page and "style" not in page.split("<svg", 1)[1].split("</svg>", 1)[0]
        seed = re.search(r'id="totp-seed">([A-Z2-7]+)<', page).group(1)
        r = t.post("/account/2fa/confirm", data={"_csrf": csrf_of(page), "code": "12345"})
        assert r.status_code == 400 and "6-digit" in r.text
        code = subprocess.run(["oathtool", "--totp", "-b", seed], capture_output=True, text=True, check=True).stdout.strip()
        r = t.post("/account/2fa/confirm", data={"_csrf": csrf_of(page), "code": code})
        assert r.status_code == 200 and len(re.findall(r"<li><code>", r.text)) == 10
    with shared_appliance.client() as c:
        assert do_login(c, "tina", NEW).headers["location"] == "/login/2fa"
        assert c.get("/dashboard").status_code == 303, "no session before the second step"
        r = c.post("/login/2fa", data={"_csrf": csrf_of(c.get("/login/2fa").text), "code": code})
        assert r.status_code == 400 and "already been used" in r.text
        r = c.post("/login/2fa", data={"_csrf": csrf_of(c.get("/login/2fa").text), "code": "abcd-efgh-jkmn-pqrs"})
        assert r.status_code == 400 and "recovery code" in r.text
    assert "mfa.totp.enable" in admin.get("/audit", params={"action": "mfa"}).text


def test_sessions_page_marks_current_and_revokes_others(shared_appliance, admin):
    with shared_appliance.client() as other:
        do_login(other)
        page = admin.get("/account/sessions").text
        assert "(this session)" in page
        r = admin.post("/account/sessions/revoke-others", data={"_csrf": csrf_of(page)})
        assert r.status_code == 303
        assert other.get("/dashboard").status_code == 303
    assert admin.get("/dashboard").status_code == 200
    assert ADMIN_PASSWORD not in admin.get("/audit").text


def _age_step_up(app):
    """Make every session's last re-authentication older than 5 minutes (the server's clock is real)."""
    from appliance.app import open_database

    db, _ = open_database(app.data_dir, readers=1)
    try:
        db.write_sync(lambda c: c.execute("UPDATE sessions SET recent_auth = 0"))
    finally:
        db.close()


def test_step_up_sends_browsers_to_reauth_and_back(shared_appliance, admin):
    _age_step_up(shared_appliance)
    r = admin.get("/settings/security")
    assert r.status_code == 303 and r.headers["location"] == "/reauth?next=%2Fsettings%2Fsecurity"
    page = admin.get(r.headers["location"])
    assert 'name="next" value="/settings/security"' in page.text
    bad = admin.post("/reauth", data={"_csrf": csrf_of(page.text), "next": "/settings/security", "secret": "nope"})
    assert bad.status_code == 400 and 'aria-invalid="true"' in bad.text
    evil = admin.post("/reauth", data={"_csrf": csrf_of(page.text), "next": "//evil.example/", "secret": ADMIN_PASSWORD})
    assert evil.status_code == 303 and evil.headers["location"] == "/dashboard", "no open redirect"
    assert admin.get("/settings/security").status_code == 200
    _age_step_up(shared_appliance)
    aid = user_id(admin, "admin")
    r = admin.post(f"/users/{aid}/reset-password", data={"_csrf": csrf_of(admin.get("/users").text)})
    assert r.status_code == 303 and r.headers["location"] == f"/reauth?next=%2Fusers%2F{aid}"
    r = admin.post("/users", data={"_csrf": csrf_of(admin.get("/users").text), "username": "zed", "role": "admin"},
                   headers={"Accept": "application/json"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "reauth_required"
    assert "zed" not in admin.get("/users").text
