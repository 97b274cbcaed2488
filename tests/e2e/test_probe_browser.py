"""The probe in a real headless Chromium against a real appliance and a real OpenSSH sshd:
add a device in the UI -> it goes up -> its chart shows points (uPlot, local assets, strict
CSP) -> the device's host key changes -> "host key changed" and an alert -> an operator
reviews and re-pins in the UI -> it is up again and the alert is resolved."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import admin_page, submit
from tests.ssh.sshd import Sshd

pytestmark = pytest.mark.browser


def _wait_panel_status(page, device_id: int, status: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.goto(f"/probe/devices/{device_id}")
        if page.locator(f"dl.facts .status-{status.replace(' ', '-')}").count():
            return
        page.wait_for_timeout(700)
    raise AssertionError(f"device never showed {status!r}: {page.locator('main').inner_text()[:1500]}")


def test_add_device_watch_it_chart_it_survive_host_key_change(appliance, tmp_path):
    sshd = Sshd(tmp_path / "sshd")
    sshd.start("a")
    try:
        with admin_page(appliance, timeout_ms=15_000) as (page, watch):
            # add the device with a password credential, in the UI
            page.goto("/devices")
            page.get_by_role("link", name="Add device").click()
            page.get_by_label("Name", exact=True).fill("lab-sshd")
            page.get_by_label("Address", exact=True).fill("127.0.0.1")
            page.get_by_label("SSH port").fill(str(sshd.port))
            page.get_by_label("Poll interval (seconds)").fill("10")
            page.get_by_label("Credential", exact=True).select_option("new")
            page.get_by_label("User name").fill(sshd.user)
            page.get_by_label("Password", exact=True).fill(sshd.password)
            assert submit(page, page.get_by_role("button", name="Add device").click).status == 303
            device_id = int(re.search(r"/devices/(\d+)", page.url).group(1))

            # the probe panel (htmx) on the device page, then the fleet page: it goes up
            expect(page.locator("#probe-panel")).to_contain_text("Monitoring")
            _wait_panel_status(page, device_id, "up")
            page.goto("/probe")
            expect(page.locator('tr[data-device="lab-sshd"] .status-up')).to_be_visible()

            # the device page itself charts it, inside the htmx-loaded probe panel
            page.goto(f"/devices/{device_id}")
            expect(page.locator("#probe-panel #charts")).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
            expect(page.locator("#probe-panel #chart-cpu canvas")).to_have_count(1)

            # and the monitoring page with ranges (uPlot draws canvases; data from series.json)
            page.goto(f"/probe/devices/{device_id}")
            charts = page.locator("#charts")
            expect(charts).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
            expect(page.locator("#chart-memory canvas")).to_have_count(1)
            page.get_by_role("button", name="1 day").click()
            expect(page.get_by_role("button", name="1 day")).to_have_attribute("aria-pressed", "true")

            # the device's host key changes: refused, marked, alerted
            sshd.stop()
            sshd.start("b")
            _wait_panel_status(page, device_id, "host key changed", timeout=45)
            page.goto("/alerts")
            expect(page.locator("table.alerts")).to_contain_text("Host key changed")

            # operator review and re-pin (audited by DeviceService) restores polling
            page.goto(f"/devices/{device_id}/host-key")
            assert submit(page, page.get_by_role("button", name=re.compile("Trust the new key")).click).status == 303
            _wait_panel_status(page, device_id, "up")
            page.goto("/alerts")
            row = page.locator("table.alerts tbody tr", has_text="Host key changed")
            expect(row).to_contain_text("resolved")
            # an operator acknowledges it (audited); acknowledged and resolved, it leaves the list
            assert submit(page, row.get_by_role("button", name="Acknowledge").click).status == 303
            expect(page.get_by_role("status")).to_contain_text("Alert acknowledged.")
            expect(page.locator("main")).not_to_contain_text("Host key changed: login refused")

            assert watch.external == [] and watch.failures() == []
            assert watch.csp == [] and watch.csp_console() == [] and watch.page_errors == []
    finally:
        sshd.stop()
