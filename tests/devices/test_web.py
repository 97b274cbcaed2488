"""Devices, credentials, import and host-key review through the real server over TLS (UI and /api/v1).

One appliance for the module; tests use distinct device names so they do not interfere.
The sentinel test runs last and checks every response body seen and the whole server log."""

import re

import httpx
import pytest

from tests.conftest import csrf_of, do_login
from tests.devices.keys import fingerprint, keygen, small_rsa

SENTINEL = "Zq7-SENTINEL-secret-91x"  # used as every password and passphrase in this module
SEEN: list[str] = []  # every response body, for the sentinel check


def _hook(response: httpx.Response) -> None:
    response.read()
    SEEN.append(response.text)


@pytest.fixture(scope="module")
def ui(shared_appliance):
    """The admin's browser session; every response body it sees is kept for the sentinel test."""
    with shared_appliance.client(event_hooks={"response": [_hook]}) as client:
        assert do_login(client).status_code == 303
        yield client


def _api_key(ui, role: str) -> str:
    page = ui.get("/api-keys/new")
    assert page.status_code == 200, page.text[:300]
    r = ui.post("/api-keys/new", data={"_csrf": csrf_of(page.text), "name": f"devices-{role}", "role": role,
                                       "expires_days": "1"})
    match = re.search(r'value="(op_[^"]+)"', r.text)
    assert match, r.text[:500]
    return match.group(1)


@pytest.fixture(scope="module")
def operator_api(shared_appliance, ui):
    with shared_appliance.client(headers={"Authorization": f"Bearer {_api_key(ui, 'operator')}"},
                       event_hooks={"response": [_hook]}) as client:
        yield client


@pytest.fixture(scope="module")
def viewer_api(shared_appliance, ui):
    with shared_appliance.client(headers={"Authorization": f"Bearer {_api_key(ui, 'viewer')}"},
                       event_hooks={"response": [_hook]}) as client:
        yield client


def post_form(client, page_path, action, data, files=None):
    page = client.get(page_path)
    assert page.status_code == 200, page.text[:300]
    return client.post(action, data={"_csrf": csrf_of(page.text), **data}, files=files)


# ---- UI ------------------------------------------------------------------------------

def test_ui_add_device_with_password_list_search_edit(ui):
    r = post_form(ui, "/devices/new", "/devices/new", {
        "name": "ui-web1", "address": "192.0.2.20", "port": "22", "tags": "prod, web", "poll_interval": "30",
        "enabled": "on", "credential_id": "new", "new_username": "root", "new_kind": "password",
        "new_password": SENTINEL})
    assert r.status_code == 303, r.text[:500]
    detail = ui.get(r.headers["location"])
    assert "ui-web1" in detail.text and "password set" in detail.text and 'id="probe-panel"' in detail.text
    listing = ui.get("/devices", params={"q": "ui-web"})
    assert "ui-web1" in listing.text and "first contact will pin" in listing.text
    assert "ui-web1" in ui.get("/devices", params={"tag": "web"}).text
    assert "ui-web1" not in ui.get("/devices", params={"tag": "nonexistent"}).text
    device_id = int(r.headers["location"].split("/")[2].split("?")[0])
    edit = post_form(ui, f"/devices/{device_id}/edit", f"/devices/{device_id}/edit", {
        "name": "ui-web1", "address": "ui-web1.example.net", "port": "2222", "tags": "prod", "poll_interval": "45",
        "credential_id": re.search(r'<option value="(\d+)" selected', ui.get(f"/devices/{device_id}/edit").text)[1],
        "legacy_algorithms": "on"})
    assert edit.status_code == 303, edit.text[:500]
    detail = ui.get(f"/devices/{device_id}")
    assert "ui-web1.example.net" in detail.text and "Legacy SSH algorithms are allowed" in detail.text
    assert "Enabled</dt><dd>no" in detail.text  # the unticked box disabled it
    confirm = ui.get(f"/devices/{device_id}/delete")
    assert "Delete ui-web1?" in confirm.text
    gone = ui.post(f"/devices/{device_id}/delete", data={"_csrf": csrf_of(confirm.text)})
    assert gone.status_code == 303 and "Device deleted." in ui.get(gone.headers["location"]).text
    assert ui.get(f"/devices/{device_id}").status_code == 404


@pytest.mark.parametrize("address,words", [
    ("http://host.example", "not a URL"), ("host name", "special characters"), ("a;rm -rf /", "special"),
    ("$(reboot)", "special"), ("999.1.1.1", "IPv4"), ("host:22", "port field"), ("root@host", "user name"),
    ("fe80::1::2", "IPv6"), ("-lead.example", "valid host name"), ("", "Enter a host name"),
])
def test_ui_malformed_addresses_get_inline_errors_and_nothing_is_stored(ui, address, words):
    r = post_form(ui, "/devices/new", "/devices/new", {"name": "bad-addr", "address": address, "port": "22",
                                                         "poll_interval": "60"})
    assert r.status_code == 400
    assert 'id="e-address"' in r.text and words in r.text
    assert "bad-addr" not in ui.get("/devices").text


def test_ui_new_credential_needs_user_and_secret(ui):
    r = post_form(ui, "/devices/new", "/devices/new", {"name": "needs-cred", "address": "192.0.2.21", "port": "22",
                                                         "poll_interval": "60", "credential_id": "new",
                                                         "new_kind": "password"})
    assert r.status_code == 400
    assert 'id="e-new_username"' in r.text and 'id="e-new_password"' in r.text
    assert 'value="new" selected' in r.text
    assert "needs-cred" not in ui.get("/devices").text


@pytest.mark.parametrize("field,value,words", [("port", "0", "between 1 and 65535"), ("port", "70000", "between"),
                                                ("port", "22x", "whole number"), ("poll_interval", "5", "between 10"),
                                                ("poll_interval", "100000", "86400")])
def test_ui_bad_port_and_interval(ui, field, value, words):
    data = {"name": "bad-num", "address": "192.0.2.1", "port": "22", "poll_interval": "60", field: value}
    r = post_form(ui, "/devices/new", "/devices/new", data)
    assert r.status_code == 400 and f'id="e-{field}"' in r.text and words in r.text


def test_ui_key_credential_errors_are_clear_and_secret_not_echoed(ui):
    private, _ = keygen("ed25519", 0, "right-phrase")
    cases = [(private, SENTINEL, "does not open"), (small_rsa(), "", "at least 2048"),
             ("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----", "", "could not be read")]
    for key, phrase, words in cases:
        r = post_form(ui, "/credentials/new", "/credentials/new", {"name": "k1", "username": "u", "kind": "key",
                                                                   "private_key": key, "passphrase": phrase})
        assert r.status_code == 400 and words in r.text
        assert "BEGIN" not in r.text.split("<textarea", 1)[1].split("</textarea>")[0]
    ok = post_form(ui, "/credentials/new", "/credentials/new", {"name": "k-ok", "username": "u", "kind": "key",
                                                                "private_key": private, "passphrase": "right-phrase"})
    assert ok.status_code == 303
    listing = ui.get("/credentials").text
    assert "k-ok" in listing and "ssh-ed25519" in listing
    assert fingerprint(keygen("ed25519", 0, "right-phrase")[1]) in listing


def test_ui_csv_import_all_or_nothing(ui):
    bad = (b"name,address,port,tags,username,password\r\n"
           b"csv-a,192.0.2.30,22,lab;a,root,pw-one\r\n"
           b"csv-b,not a host,22,lab,root,pw-two\r\n"
           b"csv-c,192.0.2.32\r\n")
    r = post_form(ui, "/devices/import", "/devices/import", {}, files={"file": ("d.csv", bad, "text/csv")})
    assert r.status_code == 400
    assert "Nothing was imported" in r.text and "<td>3</td><td>address</td>" in r.text
    assert "<td>4</td><td>row</td>" in r.text  # missing columns
    assert "csv-a" not in ui.get("/devices").text
    good = "\ufeffname,address,tags,credential\ncsv-a,192.0.2.30,lab,k-ok\ncsv-b,2001:db8::1,lab,\n".encode()
    r = post_form(ui, "/devices/import", "/devices/import", {}, files={"file": ("d.csv", good, "text/csv")})
    assert r.status_code == 200 and "Imported 2 device(s)." in r.text
    assert "csv-b" in ui.get("/devices", params={"tag": "lab"}).text


@pytest.mark.parametrize("content,words", [
    (b"name,address\nlat\xe9n,192.0.2.1\n", "Line 2 is not valid UTF-8"),
    (b"name,address\nnul\x00,192.0.2.1\n", "NUL bytes"),
    (b"name\nx\n", "Missing column(s): address"),
    (b"name,address,colour\nx,192.0.2.1,red\n", "Unknown column(s): colour"),
    (b"", "empty"),
    (b"name,address\n" + b"x" * (600 * 1024), "larger than 512 KiB"),
])
def test_ui_csv_bad_files(ui, content, words):
    r = post_form(ui, "/devices/import", "/devices/import", {}, files={"file": ("d.csv", content, "text/csv")})
    assert r.status_code == 400 and words in r.text, r.text[:2000]


def test_oversize_upload_refused_by_body_limit(ui):
    page = ui.get("/devices/import")
    r = ui.post("/devices/import", data={"_csrf": csrf_of(page.text)},
                files={"file": ("d.csv", b"a" * (3 * 1024 * 1024), "text/csv")})
    assert r.status_code == 413


def test_csrf_required_for_device_writes(shared_appliance, ui):
    r = ui.post("/devices/new", data={"name": "csrf-x", "address": "192.0.2.1"})
    assert r.status_code == 403
    assert "csrf-x" not in ui.get("/devices").text


# ---- API -----------------------------------------------------------------------------

def test_api_crud_and_write_only_credentials(operator_api):
    r = operator_api.post("/api/v1/credentials", json={"name": "api-cred", "username": "admin", "password": SENTINEL})
    assert r.status_code == 201, r.text
    cred = r.json()
    assert cred["secret"] == "set" and cred["kind"] == "password" and "password" not in cred
    r = operator_api.post("/api/v1/devices", json={"name": "api-1", "address": "[2001:db8::5]", "port": 830,
                                          "tags": ["core", "api"], "credential_id": cred["id"]})
    assert r.status_code == 201, r.text
    dev = r.json()
    assert dev["address"] == "2001:db8::5" and dev["credential"]["name"] == "api-cred"
    assert dev["host_key"]["status"] == "unpinned"
    assert [d["name"] for d in operator_api.get("/api/v1/devices", params={"tag": "core"}).json()] == ["api-1"]
    r = operator_api.patch(f"/api/v1/devices/{dev['id']}", json={"poll_interval": 120})
    assert r.status_code == 200 and r.json()["poll_interval"] == 120 and r.json()["credential"]["id"] == cred["id"]
    r = operator_api.patch(f"/api/v1/devices/{dev['id']}", json={"credential_id": None})
    assert r.json()["credential"] is None
    r = operator_api.post("/api/v1/devices", json={"name": "api-2", "address": "192.0.2.50",
                                          "credential": {"username": "ops", "password": SENTINEL}})
    assert r.status_code == 201 and r.json()["credential"]["name"] == "api-2"
    assert operator_api.delete(f"/api/v1/devices/{dev['id']}").status_code == 204
    assert operator_api.get(f"/api/v1/devices/{dev['id']}").status_code == 404
    assert operator_api.delete(f"/api/v1/credentials/{cred['id']}").status_code == 204


@pytest.mark.parametrize("body,field", [
    ({"name": "x", "address": "ftp://x"}, "address"), ({"name": "x", "address": "192.0.2.1", "port": 0}, "port"),
    ({"name": "x", "address": "192.0.2.1", "poll_interval": 1}, "poll_interval"),
    ({"name": "", "address": "192.0.2.1"}, "name"),
    ({"name": "x", "address": "192.0.2.1", "host_key": "SHA256:x"}, "host_key"),
    ({"name": "x", "address": "192.0.2.1", "credential": {"username": "u", "private_key": "nope"}}, "new_private_key"),
])
def test_api_bad_input_one_error_shape(operator_api, body, field):
    r = operator_api.post("/api/v1/devices", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_input" and field in err["details"]


def test_api_wrong_types_and_unknown_fields(operator_api):
    for body in ({"name": "x", "address": "192.0.2.1", "port": "abc"}, {"name": "x", "address": "1.2.3.4", "bogus": 1}):
        r = operator_api.post("/api/v1/devices", json=body)
        assert r.status_code == 400 and "error" in r.json()


def test_api_import_and_viewer_is_read_only(operator_api, viewer_api):
    r = operator_api.post("/api/v1/devices/import",
                          json={"csv": "name,address\napi-imp,192.0.2.60\napi-imp,192.0.2.61\n"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "import_refused", r.text
    assert r.json()["error"]["details"]["errors"][0]["line"] == 3
    assert "api-imp" not in operator_api.get("/api/v1/devices").text
    r = operator_api.post("/api/v1/devices/import", json={"csv": "name,address\napi-imp,192.0.2.60\n"})
    assert r.status_code == 200 and r.json()["imported"] == 1
    assert viewer_api.get("/api/v1/devices").status_code == 200
    assert viewer_api.post("/api/v1/devices", json={"name": "v", "address": "192.0.2.1"}).status_code == 403
    assert viewer_api.get("/api/v1/credentials").status_code == 403


def test_api_unauthenticated_refused(shared_appliance):
    with shared_appliance.client() as anon:
        assert anon.get("/api/v1/devices").status_code == 401


# ---- sentinel: last -------------------------------------------------------------------

def test_zz_no_secret_in_any_response_or_log(shared_appliance, ui, operator_api):
    private, _ = keygen("ecdsa", 256, SENTINEL)
    r = operator_api.post("/api/v1/credentials", json={"name": "sentinel-key", "username": "u", "private_key": private,
                                              "passphrase": SENTINEL})
    assert r.status_code == 201
    r = operator_api.post("/api/v1/credentials", json={"name": "sentinel-bad", "username": "u", "private_key": private,
                                              "passphrase": SENTINEL + "x"})
    assert r.status_code == 400
    for path in ("/devices", "/credentials", "/audit", "/api/v1/credentials", "/api/v1/devices"):
        (ui if not path.startswith("/api") else operator_api).get(path)
    ui.get("/audit/export.jsonl")
    assert SEEN, "no responses recorded"
    leaks = [body[:200] for body in SEEN if SENTINEL in body or "PRIVATE KEY-----\nb3Blbn" in body]
    assert not leaks
    log = shared_appliance.output()
    assert SENTINEL not in log and "PRIVATE KEY" not in log
    for path in shared_appliance.data_dir.rglob("*"):  # database, WAL, snapshots: sealed inside an encrypted file
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path
