"""API-1: schemathesis over the whole /api/v1 document against the real server with a
valid admin key: no 5xx, no response outside its documented schema, status or content type.

Bounded: a few examples per operation (hypothesis deadline off; the server is real)."""

from __future__ import annotations

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.api.helpers import make_key
from tests.conftest import ADMIN, Appliance, do_login, do_setup, free_port

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = Appliance(tmp_path_factory.mktemp("schema") / "data", free_port())
    try:
        with app.client() as client:
            assert do_setup(client, app.setup_code()).status_code == 303
            assert do_login(client).status_code == 303
        key = make_key(app, ADMIN, "admin")
        session = requests.Session()
        session.verify = app.ca
        session.headers["Authorization"] = f"Bearer {key}"
        yield app, session
        session.close()  # no idle keep-alive connection left for the server to wait on
    finally:
        app.stop()


@pytest.fixture(scope="module")
def api_schema(live):
    app, _ = live
    doc = httpx.get(f"{app.url}/api/v1/openapi.json", verify=app.tls()).json()
    return schemathesis.openapi.from_dict(doc)


def test_api_conforms_to_its_schema(live, api_schema):
    app, session = live
    failures = []
    calls = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None, phases=[Phase.explicit, Phase.generate])
        def exercise(case):
            calls.append(case.call_and_validate(base_url=app.url, session=session, checks=CHECKS,
                                                verify=app.ca).status_code)

        try:
            exercise()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)
    assert len(calls) >= 3 * len(operations), "every operation was exercised several times"
    print(f"schemathesis: {len(operations)} operations, {len(calls)} requests, statuses {sorted(set(calls))}")
