"""AUTH-8, ACL-2 over real HTTPS (issue 11 findings 7, 12 and 19): an API key alone is no
step-up. User administration and key minting carry the owner's password (and a current
TOTP code when the owner has 2FA); a key mints keys only up to its own role; read-only
keys change neither keys nor sessions; a password reset or change revokes the keys."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from datetime import UTC, datetime

import pytest

from appliance.crypto import totp
from tests.api.helpers import api, error_of, make_key, sql
from tests.conftest import ADMIN, ADMIN_PASSWORD, FAST_HASH_CONFIG, csrf_of, do_login, require_tool

NEW = "a brand new passphrase for step-up tests"


# Each test gets its own server (`appliance`): they count audit records and enrol the admin in 2FA.
@pytest.fixture(scope="module")
def appliance_config():
    return FAST_HASH_CONFIG + "login_attempts_per_minute = 500\n"


class Authenticator:
    """The admin's authenticator app: oathtool codes, each step used once, oldest usable first."""

    def __init__(self, seed: str) -> None:
        self.seed, self.last = seed, 0

    def code(self) -> str:
        now = time.time()
        step = max(self.last + 1, totp.step_at(now) - 1)  # the server accepts the current step +-1
        while step > totp.step_at(time.time()) + 1:
            time.sleep(1)
        self.last = step
        when = datetime.fromtimestamp(step * 30 + 1, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return subprocess.run([require_tool("oathtool"), "--totp", "-b", "--now", when, self.seed], check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()


def enrol_2fa(client) -> Authenticator:
    client.post("/account/2fa/start", data={"_csrf": csrf_of(client.get("/account").text)})
    page = client.get("/account/2fa").text
    device = Authenticator(re.search(r'id="totp-seed">([A-Z2-7]+)<', page).group(1))
    r = client.post("/account/2fa/confirm", data={"_csrf": csrf_of(page), "code": device.code()})
    assert r.status_code == 200, r.text
    return device


def create_user(admin_client, username: str, role: str) -> tuple[int, str]:
    """(id, temporary password) of a user made on the Users page."""
    r = admin_client.post("/users", data={"_csrf": csrf_of(admin_client.get("/users").text), "username": username,
                                          "role": role})
    assert r.status_code == 200, r.text
    temporary = re.search(r'id="temporary-password">([^<]+)<', r.text).group(1)
    listing = admin_client.get("/users").text
    return int(re.search(rf'href="/users/(\d+)">{username}<', listing).group(1)), temporary


@contextlib.contextmanager
def signed_in_user(appliance, username: str, temporary: str):
    """A browser client for a user after the forced password change (temporary -> NEW)."""
    with appliance.client() as c:
        assert do_login(c, username, temporary).status_code == 303
        page = c.get("/account/password")
        r = c.post("/account/password", data={"_csrf": csrf_of(page.text), "current": temporary, "new": NEW,
                                              "confirm": NEW})
        assert r.status_code == 303, r.text
        yield c


def test_admin_key_alone_cannot_take_over_an_account(appliance, admin_client):
    key = make_key(appliance, ADMIN, "admin")
    vid, temporary = create_user(admin_client, "vera", "admin")
    with signed_in_user(appliance, "vera", temporary):
        pass
    with api(appliance, key) as c:
        for path in (f"/api/v1/users/{vid}/totp-reset", f"/api/v1/users/{vid}/password-reset"):
            r = c.post(path)
            assert r.status_code == 400, (path, r.status_code, r.text)  # no body: the proof is missing
            r = c.post(path, json={})
            assert r.status_code == 400 and "password" in str(error_of(r)["details"]), r.text
            r = c.post(path, json={"password": "not the admin password"})
            assert r.status_code == 400 and "password" in error_of(r)["details"], r.text
            assert "temporary_password" not in r.text
        for body in ({"role": "viewer"}, {"disabled": True}, {}):  # the key's own owner, as the fuzzer did
            r = c.patch("/api/v1/users/1", json=body)
            assert r.status_code == 400, (body, r.text)
        r = c.post("/api/v1/users", json={"username": "mallory", "role": "admin"})
        assert r.status_code == 400
        assert c.get("/api/v1/users/1").json()["role"] == "admin", "the owner was not demoted"
        assert {u["username"] for u in c.get("/api/v1/users").json()} == {"admin", "vera"}
    with appliance.client() as c:
        assert do_login(c, "vera", NEW).headers["location"] == "/dashboard", "vera's password still works"
    # With the proof, the same operations work and are audited as made with a key.
    with api(appliance, key) as c:
        r = c.patch(f"/api/v1/users/{vid}", json={"role": "operator", "password": ADMIN_PASSWORD})
        assert r.status_code == 200 and r.json()["role"] == "operator", r.text
        r = c.post(f"/api/v1/users/{vid}/password-reset", json={"password": ADMIN_PASSWORD})
        assert r.status_code == 200 and r.json()["temporary_password"]
    rows = sql(appliance, "SELECT actor_type, outcome FROM audit_log WHERE action = 'auth.reauth'")
    assert rows.count(("api_key", "failure")) == 2 and rows.count(("api_key", "success")) == 2


def test_api_proof_includes_the_totp_code_when_the_owner_has_2fa(appliance, admin_client):
    device = enrol_2fa(admin_client)
    key = make_key(appliance, ADMIN, "admin")
    with api(appliance, key) as c:
        r = c.post("/api/v1/api-keys", json={"name": "n", "role": "viewer", "password": ADMIN_PASSWORD})
        assert r.status_code == 400 and "totp_code" in error_of(r)["details"], "minting asks for the code too"
        r = c.post("/api/v1/api-keys", json={"name": "n", "role": "viewer", "password": ADMIN_PASSWORD,
                                             "totp_code": device.code()})
        assert r.status_code == 201, r.text
        r = c.post("/api/v1/users", json={"username": "otto", "role": "operator", "password": ADMIN_PASSWORD})
        assert r.status_code == 400 and "totp_code" in error_of(r)["details"], r.text
        r = c.post("/api/v1/users", json={"username": "otto", "role": "operator", "password": ADMIN_PASSWORD,
                                          "totp_code": "000000"})
        assert r.status_code == 400 and "totp_code" in error_of(r)["details"]
        code = device.code()
        r = c.post("/api/v1/users", json={"username": "otto", "role": "operator", "password": ADMIN_PASSWORD,
                                          "totp_code": code})
        assert r.status_code == 201, r.text
        r = c.post("/api/v1/users", json={"username": "otto2", "role": "operator", "password": ADMIN_PASSWORD,
                                          "totp_code": code})
        assert r.status_code == 400 and "already been used" in error_of(r)["details"]["totp_code"], "no replay"
        r = c.put("/api/v1/settings/security", json={**c.get("/api/v1/settings").json()["security"],
                                                     "lockout_threshold": 12})
        assert r.status_code == 400 and "password" in str(error_of(r)["details"]), "a policy change needs the proof"


def test_a_key_mints_keys_only_up_to_its_own_role(appliance, admin_client):
    operator_key = make_key(appliance, ADMIN, "operator")  # the owner is an admin
    with api(appliance, operator_key) as c:
        r = c.post("/api/v1/api-keys", json={"name": "up", "role": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 403 and error_of(r)["code"] == "role_not_allowed", r.text
        r = c.post("/api/v1/api-keys", json={"name": "aud", "role": "auditor", "password": ADMIN_PASSWORD})
        assert r.status_code == 403, "an operator key cannot mint an auditor key either"
        r = c.post("/api/v1/api-keys", json={"name": "same", "role": "operator", "password": ADMIN_PASSWORD})
        assert r.status_code == 201 and r.json()["key"]["role"] == "operator"
    assert sql(appliance, "SELECT role FROM api_keys WHERE role = 'admin'") == []


@pytest.mark.parametrize("role", ["viewer", "auditor"])
def test_read_only_keys_change_neither_keys_nor_sessions(appliance, admin_client, role):
    key = make_key(appliance, ADMIN, role)
    other = make_key(appliance, ADMIN, "viewer")
    with api(appliance, key) as c:
        handle = c.get("/api/v1/sessions").json()[0]["handle"]  # the owner's browser session: reading is fine
        r = c.delete(f"/api/v1/sessions/{handle}")
        assert r.status_code == 403 and error_of(r)["details"]["permission"] == "apikeys.write", r.text
        r = c.post("/api/v1/api-keys", json={"name": "more", "role": "viewer", "password": ADMIN_PASSWORD})
        assert r.status_code == 403
        assert c.delete(f"/api/v1/api-keys/{other[3:15]}").status_code == 403
        assert c.delete(f"/api/v1/api-keys/{key[3:15]}").status_code == 403, "not even itself"
    assert admin_client.get("/dashboard").status_code == 200, "the browser session survived"
    assert sql(appliance, "SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL") == [(0,)]
    assert sql(appliance, "SELECT count(*) FROM audit_log WHERE action = 'access.denied' AND details LIKE ?",
               ("%apikeys.write%",)) == [(4,)]


def test_password_reset_and_change_revoke_the_owners_api_keys(appliance, admin_client):
    admin_key = make_key(appliance, ADMIN, "admin")
    oid, temporary = create_user(admin_client, "olga", "operator")
    with signed_in_user(appliance, "olga", temporary):
        pass
    olga_key = make_key(appliance, "olga", "operator")
    with api(appliance, olga_key) as c:
        assert c.get("/api/v1/health").status_code == 200
    # An admin reset (UI) revokes them, audited.
    page = admin_client.get(f"/users/{oid}")
    r = admin_client.post(f"/users/{oid}/reset-password", data={"_csrf": csrf_of(page.text)})
    assert r.status_code == 200
    temporary = re.search(r'id="temporary-password">([^<]+)<', r.text).group(1)
    with api(appliance, olga_key) as c:
        r = c.get("/api/v1/health")
        assert r.status_code == 401 and error_of(r)["details"]["reason"] == "revoked"
    reasons = sql(appliance, "SELECT json_extract(details, '$.reason'), target FROM audit_log WHERE action = 'apikey.revoke'")
    assert reasons == [("password reset", f"user:{oid}")]
    # A self-service change revokes them too (decided: the keys were minted on the old password).
    second = make_key(appliance, "olga", "viewer")
    with signed_in_user(appliance, "olga", temporary) as olga:
        page = olga.get("/account/password").text
    with api(appliance, second) as c:
        assert c.get("/api/v1/health").status_code == 401
    with api(appliance, admin_key) as c:
        assert c.get("/api/v1/health").status_code == 200, "other users' keys are untouched"
        r = c.post(f"/api/v1/users/{oid}/password-reset", json={"password": ADMIN_PASSWORD})  # API path: same rule
        assert r.status_code == 200
    assert [r for (r,) in sql(appliance, "SELECT json_extract(details, '$.reason') FROM audit_log"
                                         " WHERE action = 'apikey.revoke'")] == ["password reset", "password change"]
    assert "revokes all your API keys" in page, "the password page says what a change does to keys"
