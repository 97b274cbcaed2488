"""PLAT-6: other capabilities add metrics by appending a callable to
services.metric_sources; a failing source is skipped and counted, never fatal."""

from __future__ import annotations

import asyncio

from litestar.testing import TestClient

from appliance import app as app_mod
from appliance import config
from appliance.audit.models import Actor
from appliance.auth import queries as auth_queries
from appliance.clock import FrozenClock
from appliance.web import create_asgi


def test_registered_sources_are_rendered_and_failures_counted(tmp_path):
    services = app_mod.build(config.with_data_dir(config.Config(), str(tmp_path / "d")), FrozenClock())
    try:
        uid = services.db.write_sync(lambda c: auth_queries.insert_user(
            c, username="mon", role="viewer", password_hash="x", must_change_password=False, now=1.0))
        key = asyncio.run(services.apikeys.create(owner_id=uid, name="prometheus", role="viewer", days=5,
                                                  actor=Actor.system(), caller_role="viewer")).plaintext
        services.metric_sources.append(lambda: [("outpost_probe_devices", "gauge", "Devices polled.", {"state": "up"}, 7)])
        services.metric_sources.append(lambda: 1 / 0)
        with TestClient(create_asgi(services), base_url="https://localhost") as client:
            r = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        assert 'outpost_probe_devices{state="up"} 7' in r.text
        assert "outpost_metric_source_errors 1" in r.text and "outpost_audit_records" in r.text
    finally:
        services.close()
