"""A new user's first day in a real Chromium (AUTH-5, AUTH-6, ACL-1, UI-1):

admin creates a user and requires 2FA for all -> the user signs in with the temporary
password -> is forced to change it -> is forced to enrol TOTP (seed read from the page,
code computed by oathtool) -> sees 10 recovery codes -> signs out -> signs in with
password + a code -> a fresh sign-in replaying that same code is refused.

Every page must stay CSP-clean (the QR code is inline SVG without style) and load
nothing from outside the appliance (tests/e2e/browser.py Watch).
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import require_tool
from tests.e2e.browser import Watch, assert_clean, fill_setup, launch, require_chromium, sign_in, submit

pytestmark = pytest.mark.browser
NEW_PASSWORD = "she keeps a long passphrase in her head"


def totp_code(seed: str, at: float) -> str:
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return subprocess.run([require_tool("oathtool"), "--totp", "-b", "--now", when, seed], check=True,
                          capture_output=True, text=True, timeout=10).stdout.strip()


def test_new_user_forced_change_totp_enrolment_and_replay(appliance):
    require_chromium()
    require_tool("oathtool")
    with sync_playwright() as p:
        browser = launch(p, appliance)
        try:
            _flow(browser, appliance)
        finally:
            browser.close()


def _flow(browser, appliance):
    url = appliance.url
    admin_ctx = browser.new_context(base_url=url)
    admin_ctx.set_default_timeout(10_000)
    watch = Watch.attach(admin_ctx, url)
    page = admin_ctx.new_page()
    page.goto("/setup")
    fill_setup(page, appliance.setup_code())
    sign_in(page)

    # the admin creates the user; the temporary password is shown once
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Username").fill("nina")
    page.get_by_label("Role").select_option("operator")
    submit(page, page.get_by_role("button", name="Create user").click)
    temporary = page.locator("#temporary-password").inner_text().strip()
    assert len(temporary) >= 15

    # ... and requires two-factor sign-in for everyone
    page.get_by_role("link", name="Security policy").click()
    page.get_by_label("Required for").select_option("all")
    submit(page, page.get_by_role("button", name="Save policy").click)
    # the policy applies at once: the admin, too, must now set up 2FA before anything else
    expect(page).to_have_url(f"{url}/account/2fa")
    assert_clean(watch)
    admin_ctx.close()

    ctx = browser.new_context(base_url=url)
    ctx.set_default_timeout(10_000)
    watch = Watch.attach(ctx, url)
    page = ctx.new_page()
    page.goto("/login")
    sign_in(page, "nina", temporary)
    expect(page).to_have_url(f"{url}/account/password")

    # forced change: a weak choice is refused in place, a good one accepted
    page.get_by_label("Current password").fill(temporary)
    page.get_by_label("New password", exact=True).fill("Password1!Password1!")
    page.get_by_label("Repeat the new password").fill("Password1!Password1!")
    response = submit(page, page.get_by_role("button", name="Change password").click)
    assert response.status == 400
    expect(page.locator("#e-new")).to_contain_text("commonly used")
    page.get_by_label("Current password").fill(temporary)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    submit(page, page.get_by_role("button", name="Change password").click)

    # forced enrolment (policy: all)
    expect(page).to_have_url(f"{url}/account/2fa")
    page.goto("/dashboard")
    expect(page).to_have_url(f"{url}/account/2fa")
    submit(page, page.get_by_role("button", name="Set up two-factor sign-in").click)
    expect(page.locator(".qr svg")).to_be_visible()
    seed = page.locator("#totp-seed").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", seed)
    page.get_by_label("Code shown by the app").fill("000000" if totp_code(seed, time.time()) != "000000" else "111111")
    assert submit(page, page.get_by_role("button", name="Confirm and turn on").click).status == 400
    expect(page.locator("#e-code")).to_be_visible()
    enrol_at = time.time()
    page.get_by_label("Code shown by the app").fill(totp_code(seed, enrol_at))
    submit(page, page.get_by_role("button", name="Confirm and turn on").click)
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="I have saved them: continue").click()
    expect(page).to_have_url(f"{url}/account")
    submit(page, page.get_by_role("button", name="Sign out").click)

    # sign in with password + the NEXT step's code (the enrolment code is spent; +1 step is accepted)
    page.goto("/login")
    sign_in(page, "nina", NEW_PASSWORD)
    expect(page).to_have_url(f"{url}/login/2fa")
    code = totp_code(seed, max(time.time(), enrol_at) + 30)
    page.get_by_label("Code", exact=True).fill(code)
    submit(page, page.get_by_role("button", name="Sign in").click)
    expect(page).to_have_url(f"{url}/dashboard")
    expect(page.locator(".who")).to_have_text("nina (operator)")
    submit(page, page.get_by_role("button", name="Sign out").click)

    # a fresh sign-in replaying the same code is refused
    page.goto("/login")
    sign_in(page, "nina", NEW_PASSWORD)
    expect(page).to_have_url(f"{url}/login/2fa")
    page.get_by_label("Code", exact=True).fill(code)
    response = submit(page, page.get_by_role("button", name="Sign in").click)
    assert response.status == 400
    expect(page.locator("#e-code")).to_contain_text("already been used")
    expect(page.locator(".who")).to_have_count(0)
    assert_clean(watch, error_pages={f"{url}/account/password": 400, f"{url}/account/2fa/confirm": 400,
                                     f"{url}/login/2fa": 400})
    ctx.close()
