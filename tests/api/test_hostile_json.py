"""Issue 11 finding 20 against a real server over TLS: hostile JSON nesting, out-of-range
integers and unknown fields get 400 in the one error shape, naming what is wrong, never a
500 (RecursionError, OverflowError); every integer parameter declares its bounds."""

from __future__ import annotations

import pytest

from tests.api.helpers import api, error_of, make_key
from tests.conftest import ADMIN

MAX_DEPTH = 32  # appliance.web.jsonlimits.MAX_DEPTH, documented in the README
INT64_MAX = 2**63 - 1
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def admin_api_client(shared_appliance):
    """An API client with an admin key on the module's server."""
    with api(shared_appliance, make_key(shared_appliance, ADMIN, "admin")) as c:
        yield c


@pytest.fixture(autouse=True)
def no_server_error(shared_appliance):
    """Whatever a test sends, the server logs no unhandled exception and stays healthy."""
    before = len(shared_appliance.output())
    yield
    log = shared_appliance.output()[before:]
    assert "unhandled error" not in log, log[-2000:]


def nested(depth: int, open_: bytes = b"[", close: bytes = b"]", inner: bytes = b"") -> bytes:
    return open_ * depth + inner + close * depth


def too_deep(response) -> None:
    assert response.status_code == 400, response.text
    err = error_of(response)
    assert err["code"] == "json_too_deep" and err["details"] == {"max_depth": MAX_DEPTH}
    assert str(MAX_DEPTH) in err["message"]


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/v1/devices", nested(1000)),
    ("PUT", "/api/v1/settings/ip-allowlist", nested(5000, b'{"a":', b"}", b"1")),
    ("PATCH", "/api/v1/users/1", b'{"role": ' + nested(MAX_DEPTH) + b"}"),  # 33 levels with the outer object
    ("POST", "/api/v1/credentials", nested(200_000)),  # 400 KB, still under the body limit
])
def test_deep_nesting_is_refused_before_decoding(admin_api_client, method, path, body):
    too_deep(admin_api_client.request(method, path, content=body, headers=JSON))


def test_nesting_up_to_the_limit_reaches_validation(admin_api_client):
    # 32 levels (outer object included) is within the limit: the body is decoded and the
    # field validation answers, naming the field.
    r = admin_api_client.patch("/api/v1/users/1", content=b'{"role": ' + nested(MAX_DEPTH - 1) + b"}", headers=JSON)
    assert r.status_code == 400 and error_of(r)["details"]["fields"] == ["role"], r.text


def test_brackets_inside_strings_do_not_count(admin_api_client):
    notes = "[{" * 450 + '\\"' + "]}" * 450  # escaped quote: the scan must not leave the string early
    r = admin_api_client.post("/api/v1/devices", content=('{"name": "brackets", "address": "192.0.2.10", "notes": "%s"}'
                                                % notes).encode(), headers=JSON)
    assert r.status_code == 201, r.text
    assert r.json()["notes"] == notes.replace('\\"', '"')
    assert admin_api_client.delete(f"/api/v1/devices/{r.json()['id']}").status_code == 204


@pytest.mark.parametrize("body", [b'{"name": ', b"[" * 10, b'{"name": "x"}}', b"\xff\xfe", b'{"name": "unterminated'])
def test_malformed_json_is_a_400(admin_api_client, body):
    r = admin_api_client.post("/api/v1/devices", content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert error_of(r)["message"] == "The request body is not valid JSON." and error_of(r)["details"]["reason"], r.text


@pytest.mark.parametrize("path, name", [
    ("/api/v1/audit?cursor=9223372036854775808", "cursor"),
    ("/api/v1/audit?cursor=-5", "cursor"),
    ("/api/v1/audit?cursor=0", "cursor"),
    ("/api/v1/audit?limit=18446744073709551616", "limit"),
    ("/api/v1/sessions?user_id=18446744073709551616", "user_id"),
    ("/api/v1/sessions?user_id=0", "user_id"),
    ("/api/v1/devices/99999999999999999999", "device_id"),
    ("/api/v1/devices/9223372036854775808", "device_id"),
    ("/api/v1/credentials/18446744073709551616", "credential_id"),
    ("/api/v1/users/9223372036854775808", "user_id"),
    ("/api/v1/devices?offset=-1", "offset"),
])
def test_out_of_range_integers_name_the_parameter(admin_api_client, path, name):
    r = admin_api_client.get(path)
    assert r.status_code == 400, r.text
    assert error_of(r)["details"]["fields"] == [name]


def test_largest_ids_are_accepted_and_not_found(admin_api_client):
    assert admin_api_client.get(f"/api/v1/audit?cursor={INT64_MAX}").status_code == 200
    assert admin_api_client.get(f"/api/v1/devices/{INT64_MAX}").status_code == 404
    assert admin_api_client.get(f"/api/v1/sessions?user_id={INT64_MAX}").status_code in (200, 404)


@pytest.mark.parametrize("body, field", [
    ({"name": "d1", "address": "192.0.2.1", "credential_id": 2**63}, "credential_id"),
    ({"name": "d1", "address": "192.0.2.1", "credential_id": 2**64}, "credential_id"),
    ({"name": "d1", "address": "192.0.2.1", "credential_id": -1}, "credential_id"),
    ({"name": "d1", "address": "192.0.2.1", "port": 2**70}, "port"),
    ({"name": "d1", "address": "192.0.2.1", "poll_interval": 2**63}, "poll_interval"),
])
def test_out_of_range_body_integers_name_the_field(admin_api_client, body, field):
    r = admin_api_client.post("/api/v1/devices", json=body)
    assert r.status_code == 400, r.text
    details = error_of(r)["details"]  # the schema's bounds, or the device validation's own message
    assert field in details.get("fields", []) or field in details, r.text


@pytest.mark.parametrize("method, path, body, fields", [
    ("POST", "/api/v1/devices", {"name": "x", "bogus_field": 1}, ["bogus_field"]),
    ("POST", "/api/v1/devices", {"name": "x", "credential": {"username": "u", "bogus2": 1}}, ["credential.bogus2"]),
    ("PUT", "/api/v1/settings/ip-allowlist", {"networks": [], "extra": True}, ["extra"]),
    ("POST", "/api/v1/users", {"role": "viewer"}, ["username"]),
    ("POST", "/api/v1/devices", {"name": "x", "address": "192.0.2.1", "port": [22]}, ["port"]),
    ("PUT", "/api/v1/settings/ip-allowlist", {"networks": [1]}, ["networks[0]"]),
])
def test_body_errors_name_the_field(admin_api_client, method, path, body, fields):
    r = admin_api_client.request(method, path, json=body)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["details"]["fields"] == fields, err
    assert fields[0] in err["message"], err  # the message says which field, in plain words


def test_every_integer_parameter_declares_its_bounds(admin_api_client):
    doc = admin_api_client.get("/api/v1/openapi.json").json()
    seen = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                schema = param["schema"]
                types = [schema] + schema.get("oneOf", []) + schema.get("anyOf", [])
                if not any(s.get("type") == "integer" for s in types):
                    continue
                seen.append((method, path, param["name"]))
                # bounds on the integer schema itself or, for an optional one, on the oneOf around it
                bounds = [{**schema, **s} for s in types if s.get("type") == "integer"]
                assert all("minimum" in b and "maximum" in b for b in bounds), (method, path, param)
                assert all(b["maximum"] <= INT64_MAX for b in bounds), (method, path, param)
                if param["name"].endswith("_id") or param["name"] == "cursor":
                    assert all(b["minimum"] == 1 and b["maximum"] == INT64_MAX for b in bounds), (method, path, param)
    names = {name for _, _, name in seen}
    assert {"cursor", "user_id", "device_id", "credential_id", "limit", "offset"} <= names, seen


def test_no_api_handler_replaces_the_nesting_check():
    # Litestar runs only the closest layer's before_request: a handler with its own hook
    # would silently skip the app-level nesting check.
    from appliance.web import API_ROUTES, jsonlimits
    assert jsonlimits.MAX_DEPTH == MAX_DEPTH
    assert [h for h in API_ROUTES if h.before_request is not None] == []


@pytest.mark.parametrize("size", [40_000, 200_000, 900_000])
def test_large_body_within_the_limit_is_answered(admin_api_client, size):
    # The request-head budget must not count the body: a body whose last read was larger than
    # the head limit (32 KiB) used to drop the connection with no response at all.
    r = admin_api_client.post("/api/v1/devices/import", json={"csv": "name,address\n" + "x" * size})
    assert r.status_code == 400 and error_of(r)["code"] == "import_refused", r.text
