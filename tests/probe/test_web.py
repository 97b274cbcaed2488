"""The probe through the real server over TLS, started with --demo-data: fleet on the dashboard,
device panel, chart data, alerts, on-demand command (CSRF, audited with its command line, without output),
/metrics."""

import re

import pytest

from tests.conftest import Appliance, csrf_of, do_login, do_setup, wait_until


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    app = Appliance(tmp_path_factory.mktemp("probe-web") / "data", extra_args=["--demo-data"])
    try:
        with app.client() as client:
            assert do_setup(client, app.setup_code()).status_code == 303
            assert do_login(client).status_code == 303
            yield app, client
    finally:
        app.stop()


def _wait_up(client, count=4, timeout=30):
    seen = []

    def up() -> bool:
        seen.append(client.get("/probe/fleet").text)
        return seen[-1].count('status status-up"') >= count

    assert wait_until(up, timeout, interval=0.3), seen[-1][-3000:]
    return seen[-1]


def test_demo_fleet_goes_up_and_shows_on_dashboard(demo):
    app, client = demo
    html = _wait_up(client)
    assert "demo-0001" in html and " ms" in html and "%" in html
    dash = client.get("/dashboard")
    assert dash.status_code == 200 and 'hx-get="/probe/fleet"' in dash.text
    # demo devices were added through DeviceService, audited as the system, and TOFU-pinned
    audit = client.get("/audit", params={"action": "device.hostkey.pin"}).text
    assert "SHA256:" in audit


def test_panel_charts_and_series(demo):
    _, client = demo
    _wait_up(client)
    device_id = int(re.search(r'href="/probe/devices/(\d+)"', client.get("/probe/fleet").text).group(1))
    panel = client.get(f"/devices/{device_id}/probe-panel")
    assert panel.status_code == 200 and "Monitoring" in panel.text and "Latency" in panel.text
    page = client.get(f"/probe/devices/{device_id}")
    assert "/static/vendor/uPlot.iife.min.js" in page.text and "/static/charts.js" in page.text
    assert "<script>" not in page.text and "style=" not in page.text
    series = client.get(f"/probe/devices/{device_id}/series.json", params={"range": "1h"}).json()
    assert len(series["ts"]) >= 1 and len(series["cpu"]) == len(series["ts"])
    bad = client.get(f"/probe/devices/{device_id}/series.json", params={"range": "5y"}, headers={"Accept": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["range"]
    assert client.get("/probe/devices/99999/series.json").status_code == 404


def test_on_demand_command_output_shown_not_audited(demo):
    _, client = demo
    _wait_up(client)
    device_id = int(re.search(r'href="/probe/devices/(\d+)"', client.get("/probe/fleet").text).group(1))
    page = client.get(f"/probe/devices/{device_id}/run")
    token = csrf_of(page.text)
    # without the CSRF token: refused
    assert client.post(f"/probe/devices/{device_id}/command", data={"command": "echo x"}).status_code == 403
    # the output (secret-output-123) differs from the command line's text, which the audit keeps in full
    r = client.post(f"/probe/devices/{device_id}/command",
                    data={"_csrf": token, "command": "echo \"secret-output-\"'123'"})
    assert r.status_code == 200 and "secret-output-123" in r.text
    empty = client.post(f"/probe/devices/{device_id}/command", data={"_csrf": token, "command": "   "})
    assert empty.status_code == 400 and "Enter a command" in empty.text
    test = client.post(f"/probe/devices/{device_id}/test", data={"_csrf": token})
    assert "Connectivity OK" in test.text
    audit = client.get("/audit", params={"action": "probe.command.run"}).text
    assert "probe.command.run" in audit and "secret-output-123" not in audit and "secret-output-" in audit


def test_alerts_page_and_acknowledge(demo):
    app, client = demo
    page = client.get("/alerts")
    assert page.status_code == 200 and "Alerts" in page.text
    token = csrf_of(page.text)
    assert client.post("/alerts/999999/ack", data={"_csrf": token}).status_code == 404


def test_metrics_include_probe_backlog_and_lag(demo):
    app, _ = demo
    from tests.api.helpers import api, make_key

    with api(app, make_key(app, "admin", "viewer")) as c:
        text = c.get("/metrics").text
    for name in ("outpost_probe_backlog", "outpost_probe_lag_seconds", "outpost_probe_devices 4",
                 "outpost_probe_connections"):
        assert name in text, text[-2000:]


def test_viewer_sees_but_cannot_run_or_acknowledge(demo):
    """probe.view for viewers; probe.run and alerts.ack only for operators and admins (refused, audited)."""
    from tests.auth.webusers import create_user, signed_in

    app, admin = demo
    _wait_up(admin)
    device_id = int(re.search(r'href="/probe/devices/(\d+)"', admin.get("/probe/fleet").text).group(1))
    password = create_user(admin, "watcher", "viewer")
    with signed_in(app, "watcher", password) as viewer:
        assert viewer.get("/probe").status_code == 200
        assert viewer.get(f"/devices/{device_id}/probe-panel").status_code == 200
        page = viewer.get("/alerts")
        assert page.status_code == 200 and "Acknowledge" not in page.text
        token = csrf_of(page.text)
        assert viewer.get(f"/probe/devices/{device_id}/run").status_code == 403
        r = viewer.post(f"/probe/devices/{device_id}/command", data={"_csrf": token, "command": "id"})
        assert r.status_code == 403
        assert viewer.post("/alerts/1/ack", data={"_csrf": token}).status_code == 403
    denied = admin.get("/audit", params={"action": "access.denied", "actor": "watcher"}).text
    assert f"/probe/devices/{device_id}/command" in denied
