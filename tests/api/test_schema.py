"""API-1 (issue 11 finding 20): schemathesis over the live /api/v1 OpenAPI document, against
the real server over TLS, with an admin API key: no 5xx, and no response outside its
documented schema, status or content type.

Path parameters mostly name real objects seeded first (users, devices, credentials, API
keys, browser sessions), so `/{id}` operations reach the object code, not only the 404
path. Each operation runs valid (positive) and schema-violating (negative) examples.
Bounded and reproducible: a fixed number of examples per operation, derandomized.

Never a path parameter, so one example cannot end the run: the API key the fuzzer signs in
with, and the admin who owns it (a password reset, a role change or "disabled" would cut the
key off). Generated ids otherwise range freely. Operations that delete run last, so deleted
seeds do not starve the others."""

from __future__ import annotations

import re

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.api.helpers import api, key_id, make_key, seed_user
from tests.conftest import ADMIN, do_login

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
REAL_SHARE = 4  # in 5 examples, the path names a seeded object


@pytest.fixture(scope="module")
def fuzz_target(shared_appliance):
    """(appliance, requests session with an admin key, seeded objects, the fuzzer's own user and key)."""
    app = shared_appliance
    for _ in range(2):  # two browser sessions to list and revoke
        with app.client() as client:
            assert do_login(client).status_code == 303
    key = make_key(app, ADMIN, "admin")
    seeds = seed_objects(app, key)
    with api(app, key) as c:
        admin_id = next(u["id"] for u in c.get("/api/v1/users").json() if u["username"] == ADMIN)
    session = requests.Session()
    session.verify = app.ca
    session.headers["Authorization"] = f"Bearer {key}"
    yield app, session, seeds, {"user_id": admin_id, "key_id": key_id(key)}
    session.close()  # no idle keep-alive connection left for the server to wait on


def seed_objects(app, key: str) -> dict[str, list]:
    """Real objects for the path parameters, made through the API (and the key service)."""
    users = [seed_user(app, key, "fuzz-operator", "operator"), seed_user(app, key, "fuzz-viewer", "viewer")]
    with api(app, key) as c:
        creds = []
        for n in range(2):
            r = c.post("/api/v1/credentials", json={"name": f"fuzz-cred-{n}", "username": "probe",
                                                    "password": f"fuzz password {n}"})
            assert r.status_code == 201, r.text
            creds.append(r.json()["id"])
        devices = []
        for n in range(3):  # disabled: the probe never dials these documentation addresses
            body = {"name": f"fuzz-dev-{n}", "address": f"192.0.2.{n + 10}", "enabled": False, "tags": ["fuzz"]}
            if n == 0:
                body["credential"] = {"username": "probe", "password": "fuzz device password"}
            r = c.post("/api/v1/devices", json=body)
            assert r.status_code == 201, r.text
            devices.append(r.json()["id"])
        handles = [s["handle"] for s in c.get("/api/v1/sessions", params={"all": "true"}).json()]
    assert len(handles) >= 2
    keys = [key_id(make_key(app, ADMIN, "viewer")), key_id(make_key(app, "fuzz-operator", "operator"))]
    return {"user_id": users, "device_id": devices, "credential_id": creds, "key_id": keys, "handle": handles}


@pytest.fixture(scope="module")
def api_schema(fuzz_target):
    app = fuzz_target[0]
    doc = httpx.get(f"{app.url}/api/v1/openapi.json", verify=app.tls()).json()
    return schemathesis.openapi.from_dict(doc)


def cases(operation, mode: GenerationMode, seeds: dict[str, list], own: dict):
    """The operation's cases; most with every seeded path parameter set to a real object,
    never naming the fuzzer's own key or its owner."""
    generated = operation.as_strategy(mode).filter(
        lambda case: all((case.path_parameters or {}).get(n) not in (v, str(v)) for n, v in own.items()))
    names = [n for n in re.findall(r"{(\w+)}", operation.path) if n in seeds]
    if not names:
        return generated
    real = st.fixed_dictionaries({n: st.sampled_from(seeds[n]) for n in names}).flatmap(
        lambda fixed: operation.as_strategy(mode, path_parameters=fixed))
    return st.integers(0, REAL_SHARE).flatmap(lambda pick: real if pick else generated)


def test_api_conforms_to_its_schema(fuzz_target, api_schema):
    app, session, seeds, own = fuzz_target
    failures = []
    calls = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    operations.sort(key=lambda op: op.method.upper() == "DELETE")  # stable: the rest keep document order

    for operation in operations:
        for mode, examples in EXAMPLES.items():
            @given(case=cases(operation, mode, seeds, own))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
            def exercise(case):
                calls.append((case.path_parameters or {}, case.call_and_validate(
                    base_url=app.url, session=session, checks=CHECKS, verify=app.ca).status_code))

            try:
                exercise()
            except Exception as exc:  # collect every operation's failure, then report them together
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)
    statuses = sorted({status for _, status in calls})
    assert len(calls) >= 3 * len(operations), "every operation was exercised several times"
    assert 200 in statuses and 400 in statuses
    # every kind of seeded object was reached and answered 2xx, not only refused
    reached = {n for params, status in calls if status < 300 for n, v in params.items() if v in seeds.get(n, [])}
    assert reached == set(seeds), reached
    print(f"schemathesis: {len(operations)} operations, {len(calls)} requests, statuses {statuses}")


EDGE_INTS = [-1, 0, 1, 2**63 - 1, 2**63, 2**64, 10**30]
DEEP_JSON = b"[" * 1000 + b"]" * 1000


def _int_bounds(schema: dict) -> tuple[int, int] | None:
    """(minimum, maximum) of an integer parameter, declared on it or on the oneOf around it."""
    for sub in [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]:
        if sub.get("type") == "integer":
            merged = {**schema, **sub}
            return merged.get("minimum", -(2**200)), merged.get("maximum", 2**200)
    return None


def test_edge_integers_and_deep_json_on_every_operation(fuzz_target):
    """Beyond the fuzzer's examples: every integer parameter of the live document gets the
    values at and past its declared bounds and past 64 bits (out of bounds: 400, never 5xx),
    and every operation with a body gets JSON nested 1,000 deep (400, never 5xx). No real
    object is touched: ids are 0, negative or far beyond any row."""
    app, session = fuzz_target[0], fuzz_target[1]
    doc = session.get(f"{app.url}/api/v1/openapi.json", verify=app.ca).json()  # requests: env beats session.verify
    problems, sent = [], 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            filler = {p["name"]: str(2**63 - 1) if _int_bounds(p["schema"]) else "no-such-object"
                      for p in params if p["in"] == "path"}
            body = {} if "requestBody" in op else None
            for param in params:
                bounds = _int_bounds(param["schema"])
                if bounds is None:
                    continue
                if bounds[0] < -(2**63) or bounds[1] > 2**63 - 1:
                    problems.append(f"{method.upper()} {path} {param['name']}: no bounds declared")
                for value in EDGE_INTS:
                    if param["in"] == "path":
                        if value == 1:
                            continue  # a real object: the fuzzer's business
                        url, query = path.format(**{**filler, param["name"]: value}), {}
                    else:
                        url, query = path.format(**filler), {param["name"]: value}
                    r = session.request(method.upper(), app.url + url, params=query, json=body, verify=app.ca)
                    sent += 1
                    inside = bounds[0] <= value <= bounds[1]
                    if r.status_code >= 500 or (not inside and r.status_code != 400):
                        problems.append(f"{method.upper()} {url} {query}: {r.status_code} {r.text[:200]}")
            if body is not None:
                r = session.request(method.upper(), app.url + path.format(**filler), data=DEEP_JSON,
                                    headers={"Content-Type": "application/json"}, verify=app.ca)
                sent += 1
                if r.status_code != 400:
                    problems.append(f"{method.upper()} {path} nested JSON: {r.status_code} {r.text[:200]}")
    assert not problems, "\n".join(problems)
    assert sent >= 100
