"""AUTH-7 and AUTH-8 time limits through the real server on a frozen clock (tests/auth/clocked.py):
the 12-hour absolute expiry, the idle timeout that background refreshes do not reset
(issue 11 finding 11), and the step-up window that first-time 2FA enrolment and session
rotation cannot bypass (finding 4)."""

from __future__ import annotations

import html
import json
import re
import subprocess
from datetime import UTC, datetime

import pytest

from tests.auth.clocked import ClockedAppliance
from tests.conftest import ADMIN_PASSWORD, FAST_HASH_CONFIG, csrf_of, require_tool

MIN = 60.0


@pytest.fixture
def box(tmp_path):
    appliance = ClockedAppliance(tmp_path / "data", FAST_HASH_CONFIG + "login_attempts_per_minute = 500\n")
    try:
        appliance.set_up_admin()
        yield appliance
    finally:
        appliance.close()


def oathtool(seed: str, at: float) -> str:
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return subprocess.run([require_tool("oathtool"), "--totp", "-b", "--now", when, seed], check=True,
                          capture_output=True, text=True, timeout=10).stdout.strip()


def expiries(box, reason: str) -> int:
    return box.services.db.read_sync(lambda c: c.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'auth.session.expire' AND details LIKE ?",
        (f'%"{reason}"%',)).fetchone()[0])


def test_absolute_expiry_at_12_hours_however_active(box):
    with box.admin() as c:
        last_ok = 0.0
        for step in range(1, 80):
            box.clock.advance(10 * MIN)  # active every 10 minutes: the idle timeout never fires
            r = c.get("/dashboard")
            if r.status_code != 200:
                break
            last_ok = step * 10 * MIN
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert 11.5 * 3600 < last_ok < 12 * 3600 <= step * 10 * MIN, (last_ok, step)
    assert expiries(box, "absolute") == 1


def test_rotation_keeps_the_absolute_expiry_of_the_sign_in(box):
    new = "a fresh passphrase for the clock test"
    with box.admin() as c:
        for _ in range(71):  # 11 h 50 min of activity
            box.clock.advance(10 * MIN)
            assert c.get("/dashboard").status_code == 200
        page = c.get("/account/password")
        r = c.post("/account/password", data={"_csrf": csrf_of(page.text), "current": ADMIN_PASSWORD, "new": new,
                                              "confirm": new})
        assert r.status_code == 303, r.text  # rotated: a new session id
        box.clock.advance(11 * MIN)
        assert c.get("/dashboard").status_code == 303, "12 h after sign-in, even though the id was rotated"
    assert expiries(box, "absolute") == 1


def _set_idle_minutes(c, minutes: int) -> None:
    page = c.get("/settings/security")
    form = {"_csrf": csrf_of(page.text), "password_min_length": "15", "password_history": "5", "totp_policy": "optional",
            "session_idle_minutes": str(minutes), "lockout_threshold": "10", "lockout_minutes": "15"}
    assert c.post("/settings/security", data=form).status_code == 303


def _background_headers(page: str, path: str) -> dict:
    """The headers the page's htmx poll of `path` sends (its hx-headers attribute)."""
    tag = re.search(rf'<[^>]*hx-get="{re.escape(path)}"[^>]*hx-trigger="every [^"]*"[^>]*>', page)
    assert tag, f"no polling element for {path}"
    found = re.search(r"hx-headers='([^']*)'", tag.group(0)) or re.search(r'hx-headers="([^"]*)"', tag.group(0))
    assert found, f"the poll of {path} declares no headers"
    return {"HX-Request": "true", **json.loads(html.unescape(found.group(1)))}


def test_dashboard_polling_does_not_keep_a_session_alive(box):
    with box.admin() as admin:
        _set_idle_minutes(admin, 5)
    with box.admin() as polling, box.admin() as active:
        dashboard = polling.get("/dashboard").text
        poll = _background_headers(dashboard, "/dashboard/health")
        fleet = _background_headers(polling.get("/probe/fleet").text, "/probe/fleet")
        assert poll == fleet == {"HX-Request": "true", "X-Outpost-Background": "1"}
        for minute in range(1, 5):
            box.clock.advance(MIN)  # the page polls every 10 s; one poll a minute is enough here
            assert polling.get("/dashboard/health", headers=poll).status_code == 200, minute
            assert polling.get("/probe/fleet", headers=fleet).status_code == 200, minute
            assert active.get("/dashboard").status_code == 200, minute
        box.clock.advance(MIN + 1)  # 5 minutes after the last real request of the polling page
        r = polling.get("/dashboard/health", headers=poll)
        assert r.status_code == 401 and r.headers.get("hx-redirect") == "/login", "idle: signed out"
        assert active.get("/dashboard").status_code == 200, "a user who clicks stays signed in"
    assert expiries(box, "idle") == 1


def test_background_request_does_not_move_last_seen(box):
    with box.admin() as c:
        page = c.get("/dashboard").text
        poll = _background_headers(page, "/dashboard/health")
        before = box.services.db.read_sync(lambda conn: conn.execute("SELECT last_seen FROM sessions").fetchall())
        box.clock.advance(2 * MIN)
        assert c.get("/dashboard/health", headers=poll).status_code == 200
        after = box.services.db.read_sync(lambda conn: conn.execute("SELECT last_seen FROM sessions").fetchall())
        assert after == before
        assert c.get("/dashboard").status_code == 200
        moved = box.services.db.read_sync(lambda conn: conn.execute("SELECT last_seen FROM sessions").fetchall())
        assert moved[0][0] == pytest.approx(box.clock.now())


def test_stale_session_cannot_enrol_2fa_and_rotation_keeps_the_step_up_time(box):
    with box.admin() as c:
        box.clock.advance(6 * MIN)  # the password was entered 6 minutes ago: step-up is stale
        token = csrf_of(c.get("/account/2fa").text)
        r = c.post("/account/2fa/start", data={"_csrf": token})
        assert r.status_code == 303 and r.headers["location"].startswith("/reauth?next="), "first enrolment needs step-up"
        assert 'id="totp-seed"' not in c.get("/account/2fa").text, "no seed was issued"
        r = c.post("/account/2fa/confirm", data={"_csrf": token, "code": "123456"})
        assert r.status_code == 303 and r.headers["location"].startswith("/reauth?next=")
        page = c.get("/reauth?next=/account/2fa")
        r = c.post("/reauth", data={"_csrf": csrf_of(page.text), "secret": ADMIN_PASSWORD, "next": "/account/2fa"})
        assert r.status_code == 303
        assert c.post("/account/2fa/start", data={"_csrf": csrf_of(c.get("/account/2fa").text)}).status_code == 303
        page = c.get("/account/2fa").text
        seed = re.search(r'id="totp-seed">([A-Z2-7]+)<', page).group(1)
        box.clock.advance(4 * MIN + 30)  # still inside the 5 minutes since the password
        r = c.post("/account/2fa/confirm", data={"_csrf": csrf_of(page), "code": oathtool(seed, box.clock.now())})
        assert r.status_code == 200 and "recovery" in r.text.lower()  # the session id was rotated
        box.clock.advance(MIN)  # 5.5 minutes since the password; 1 minute since the rotation
        r = c.get("/api-keys/new")
        assert r.status_code == 303 and r.headers["location"].startswith("/reauth?next="), \
            "the rotated session kept the old step-up time"
        r = c.post("/api-keys/new", data={"_csrf": csrf_of(c.get("/api-keys").text), "name": "x", "role": "admin",
                                          "expires_days": "365"})
        assert r.status_code == 303 and r.headers["location"].startswith("/reauth")
        r = c.post("/users", data={"_csrf": csrf_of(c.get("/users").text), "username": "mallory", "role": "admin"})
        assert r.status_code == 303 and r.headers["location"].startswith("/reauth")
    counts = box.services.db.read_sync(lambda conn: conn.execute(
        "SELECT (SELECT count(*) FROM api_keys), (SELECT count(*) FROM users)").fetchone())
    assert tuple(counts) == (0, 1)
