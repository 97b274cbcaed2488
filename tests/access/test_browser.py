"""API keys, IP allow list, login report and API docs pages in a real headless Chromium
(UI-1, ACL-2, ACL-3, AUDIT-5, API-1): the key is created through the form and works
against the API, the pages load nothing from outside and break no CSP rule, forms
show errors in place."""

from __future__ import annotations

import re

import pytest

from tests.api.helpers import api, error_of
from tests.e2e.browser import admin_page, submit

pytestmark = pytest.mark.browser


def test_api_key_allowlist_report_and_docs_pages(appliance, tmp_path):
    with admin_page(appliance) as (page, watch):
        page.goto("/api-keys")
        page.get_by_role("link", name="Create an API key").click()
        page.get_by_label("Name").fill("")
        page.get_by_label("Expires after (days)").fill("0")
        assert submit(page, page.get_by_role("button", name="Create key").click).status == 400
        assert page.locator(".field.invalid").count() == 2
        page.get_by_label("Name").fill("browser made")
        page.get_by_label("Role").select_option("viewer")
        page.get_by_label("Expires after (days)").fill("3")
        assert submit(page, page.get_by_role("button", name="Create key").click).status == 201
        key = page.locator("#new-key").input_value()
        assert re.fullmatch(r"op_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key)
        page.screenshot(path=str(tmp_path / "created.png"))
        with api(appliance, key) as client:
            assert client.get("/api/v1/health").status_code == 200
        page.goto("/api-keys")
        assert key[16:] not in page.content()
        submit(page, page.get_by_role("button", name="Revoke").click)
        with api(appliance, key) as client:
            assert error_of(client.get("/api/v1/health"))["details"]["reason"] == "revoked"

        page.goto("/settings/allowlist")
        page.get_by_label("Allowed networks, one per line").fill("10.0.0.0/8\n192.0.2.1/24")
        assert submit(page, page.get_by_role("button", name="Save").click).status == 400
        assert "did you mean 192.0.2.0/24" in page.content()
        assert page.get_by_label("Allowed networks, one per line").input_value() == "10.0.0.0/8\n192.0.2.1/24"
        page.get_by_label("Allowed networks, one per line").fill("10.0.0.0/8")
        assert submit(page, page.get_by_role("button", name="Save").click).status == 400
        assert "would lock you out" in page.content()
        page.screenshot(path=str(tmp_path / "allowlist.png"))

        page.goto("/audit/logins")
        assert page.locator("table.report").count() == 3 and "admin" in page.content()
        page.goto("/api/v1/docs")
        assert page.get_by_role("heading", name=re.compile("Outpost API")).is_visible()
        page.screenshot(path=str(tmp_path / "docs.png"))
        assert not watch.external and not watch.failures() and not watch.csp and not watch.page_errors
        # Form pages answered 400 on purpose (errors shown in place); Chromium logs those statuses.
        unexpected = [m for m in watch.console_errors() if "status of 400" not in m[1]]
        assert not unexpected, unexpected
