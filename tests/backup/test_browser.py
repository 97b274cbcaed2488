"""UI-2 in a real browser: Settings -> Backups shows progress (htmx polling) until the
encrypted file is ready, then downloads it; the certificates page loads cleanly (strict CSP)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import ADMIN_PASSWORD, do_login, do_setup
from tests.e2e.browser import SESSION_COOKIE, Watch, assert_clean, open_browser, submit


@pytest.fixture
def browser(appliance):
    with open_browser(appliance) as b:
        yield b


def test_backup_page_progress_and_download(appliance, browser, tmp_path) -> None:
    with appliance.client() as http:
        assert do_setup(http, appliance.setup_code()).status_code == 303
        assert do_login(http).status_code == 303
        token = http.cookies.get(SESSION_COOKIE)
    context = browser.new_context(base_url=appliance.url, accept_downloads=True)
    context.set_default_timeout(15_000)
    try:
        watch = Watch.attach(context, appliance.url)
        context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": appliance.url, "secure": True,
                              "httpOnly": True, "sameSite": "Strict"}])
        page = context.new_page()
        page.goto("/settings/certificates")
        expect(page.get_by_role("heading", name="TLS certificates")).to_be_visible()
        page.goto("/settings/backups")
        page.get_by_label("Backup passphrase").fill("browser backup passphrase")
        page.get_by_label("Repeat the passphrase").fill("browser backup passphrase")
        page.get_by_label("Your password").fill(ADMIN_PASSWORD)  # step-up: a backup holds every key
        submit(page, page.get_by_role("button", name="Create backup").click)
        expect(page.get_by_role("heading", name="Backup")).to_be_visible()
        link = page.locator("#download")
        expect(link).to_be_visible(timeout=30_000)  # shown at once, or swapped in by the htmx poll while it runs
        with page.expect_download() as info:
            link.click()
        saved = tmp_path / "dl.opbk"
        info.value.save_as(saved)
        assert saved.read_bytes()[:8] == b"OUTPOSTB"
        assert_clean(watch)
    finally:
        context.close()
