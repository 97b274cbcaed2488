"""The web UI in a real headless Chromium against a real appliance over TLS.

Covers the main job's first steps in a browser (UI-1: setup, sign-in, dashboard,
audit log, CSV export, sign-out), the back button after sign-out and
`Cache-Control: no-store` (AUTH-7, ACL-4), the air gap (PLAT-4: no request leaves
the appliance, nothing fails, no CSP violation, no script error, the htmx refresh
works), inline form errors (UI-2, AUTH-4's uniform failure message) and a
keyboard-only sign-in (UI-1).

TLS is verified: the browser pins the key that the appliance's CA vouches for (see
tests/e2e/browser.py); no test uses `ignore_https_errors`.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ADMIN, ADMIN_PASSWORD, do_setup
from tests.e2e.browser import Watch, launch, require_chromium

pytestmark = pytest.mark.browser

TILES = ["CPU", "Memory", "Data disk", "Database", "Certificate", "Version"]
CSV_HEADER = ["seq", "time_utc", "code", "action", "actor_type", "actor", "source", "target", "outcome", "details",
              "hash"]
AUTHENTICATED = ("/dashboard", "/dashboard/health", "/audit", "/audit/export.csv", "/about")
UNIFORM_LOGIN_FAILURE = "Sign-in failed: wrong username or password, or the account is temporarily locked."


@pytest.fixture
def browser(appliance):
    require_chromium()
    with sync_playwright() as p:
        b = launch(p, appliance)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def context(browser, appliance):
    ctx = browser.new_context(base_url=appliance.url, accept_downloads=True)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


def fill_setup(page, code: str, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> None:
    page.get_by_label("Setup code").fill(code)
    page.get_by_label("Administrator username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat the password").fill(password)
    page.get_by_role("button", name="Create administrator").click()


def sign_in(page, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def audit_actions(page) -> list[str]:
    return page.locator("table.audit tbody tr td:nth-child(3) code").all_inner_texts()


def audit_seqs(page) -> set[int]:
    return {int(s) for s in page.locator("table.audit tbody tr td:nth-child(1)").all_inner_texts()}


def assert_nothing_private(page) -> None:
    """The page shown after sign-out must not reveal any signed-in content."""
    body = page.locator("body").inner_text()
    for private in ("Dashboard", "Audit log", "auth.login.success", "setup.code.issue", "Sign out", ADMIN + " (admin)"):
        assert private not in body, f"{private!r} visible after sign-out at {page.url}:\n{body}"
    expect(page.locator("table.audit")).to_have_count(0)
    expect(page.locator("#health")).to_have_count(0)
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)


def test_full_flow_setup_signin_dashboard_audit_export_signout(appliance, context):
    watch = Watch.attach(context, appliance.url)
    page = context.new_page()
    url = appliance.url

    # / -> setup
    page.goto("/")
    expect(page).to_have_url(f"{url}/setup")
    expect(page.get_by_role("heading", name="First-run setup")).to_be_visible()
    fill_setup(page, appliance.setup_code())

    # -> sign in
    expect(page).to_have_url(f"{url}/login?setup=done")
    expect(page.get_by_role("status")).to_contain_text("Setup is complete")
    sign_in(page)

    # -> dashboard with the self-health tiles
    expect(page).to_have_url(f"{url}/dashboard")
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
    expect(page.locator("#health .tile h2")).to_have_text(TILES)
    expect(page.locator(".who")).to_have_text(f"{ADMIN} (admin)")

    # -> audit log via the main navigation
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    expect(page).to_have_url(f"{url}/audit")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    unfiltered = audit_actions(page)
    assert "setup.code.issue" in unfiltered and "auth.login.success" in unfiltered, unfiltered  # filter must matter

    page.get_by_label("Action").fill("auth")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/audit\?(.*&)?action=auth(&|$)"))
    expect(page.get_by_label("Action")).to_have_value("auth")
    filtered = audit_actions(page)
    assert "auth.login.success" in filtered, filtered
    assert "setup.code.issue" not in filtered, filtered
    assert all(a.startswith("auth.") for a in filtered), filtered
    table_seqs = audit_seqs(page)

    # -> CSV export of exactly the filtered rows
    csv_link = page.get_by_role("link", name="CSV", exact=True)
    assert "action=auth" in (csv_link.get_attribute("href") or "")
    with page.expect_download() as download_info:
        csv_link.click()
    download = download_info.value
    assert download.failure() is None
    assert re.fullmatch(r"outpost-audit-\d{8}T\d{6}Z\.csv", download.suggested_filename), download.suggested_filename
    with open(download.path(), encoding="utf-8", newline="") as fh:
        text = fh.read()
    assert text.startswith("seq,time_utc,"), text[:200]
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == CSV_HEADER
    records = [dict(zip(CSV_HEADER, r)) for r in rows[1:]]
    assert records, text
    assert all(r["action"].startswith("auth.") for r in records), [r["action"] for r in records]
    assert "auth.login.success" in [r["action"] for r in records]
    assert {int(r["seq"]) for r in records} == table_seqs  # the same rows as the filtered table
    expect(page).to_have_url(re.compile(r"/audit\?"))  # a download does not navigate away

    # Chromium hands a download to its download manager without a response event, so the
    # export's headers are read with the browser's own session cookie over verified TLS.
    session = {c["name"]: c["value"] for c in context.cookies(url)}
    assert "__Host-outpost" in session, context.cookies(url)
    with appliance.client(cookies={"__Host-outpost": session["__Host-outpost"]}, follow_redirects=False) as http:
        export = http.get(csv_link.get_attribute("href"))
        assert export.status_code == 200 and export.text.startswith("seq,time_utc,"), export.status_code
        assert export.headers.get("cache-control") == "no-store", export.headers

    # -> sign out, then Back: nothing private may be shown
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{url}/login")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert_nothing_private(page)
    for _ in range(2):  # back to the filtered audit page, then to the unfiltered one
        page.go_back(wait_until="load")
        page.wait_for_load_state("load")
        assert_nothing_private(page)
        expect(page).to_have_url(f"{url}/login")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # The session was revoked server-side, not just forgotten by the browser (AUTH-7).
    with appliance.client(cookies={"__Host-outpost": session["__Host-outpost"]}, follow_redirects=False) as http:
        stale = http.get("/dashboard")
        assert stale.status_code == 303 and stale.headers["location"] == "/login", stale.status_code
    # The server was asked again (no-store) and refused: the revisit ended in a redirect.
    assert [r.status for r in watch.seen("/audit")][-2:] == [303, 303], [(r.path, r.status) for r in watch.responses]

    # Every authenticated response carried Cache-Control: no-store.
    authenticated = [r for r in watch.responses if r.path.split("?", 1)[0] in AUTHENTICATED and r.status == 200]
    assert {r.path.split("?", 1)[0] for r in authenticated} >= {"/dashboard", "/audit"}, \
        [(r.path, r.status) for r in watch.responses]
    for r in watch.responses:
        if not r.path.startswith("/static/"):
            assert r.headers.get("cache-control") == "no-store", (r.path, r.status, r.headers)

    assert not watch.external and not watch.failures() and not watch.subresource_errors(), watch
    assert not watch.page_errors and not watch.csp and not watch.csp_console(), watch


def test_no_external_requests_and_no_errors_on_any_page(appliance, context):
    """PLAT-4 (and ACL-4's strict CSP): every page loads only from the appliance, cleanly."""
    watch = Watch.attach(context, appliance.url)
    page = context.new_page()
    url = appliance.url
    expected_status = {}  # path -> status of a page that is deliberately an error

    def visit(path: str, status: int = 200) -> None:
        response = page.goto(path)
        assert response is not None and response.status == status, (path, response and response.status)
        if status != 200:
            expected_status[page.url] = status

    # Signed out.
    visit("/")                                         # -> /setup
    expect(page).to_have_url(f"{url}/setup")
    fill_setup(page, "AAAAA-BBBBB-CCCCC-DDDDD")        # the setup page with an inline error (400)
    expect(page.locator("#e-code")).to_be_visible()
    expected_status[page.url] = 400
    fill_setup(page, appliance.setup_code())
    expect(page).to_have_url(f"{url}/login?setup=done")
    sign_in(page, password="not the password at all")  # the sign-in page with a failure (401)
    expect(page.get_by_role("alert")).to_be_visible()
    expected_status[page.url] = 401
    visit("/nonexistent", 404)                         # error page, signed out

    # Signed in.
    sign_in_page = page.goto("/login")
    assert sign_in_page is not None and sign_in_page.status == 200
    sign_in(page)
    expect(page).to_have_url(f"{url}/dashboard")
    csrf = page.locator('input[name="_csrf"]').first.get_attribute("value")
    assert csrf
    # Let the dashboard sit: htmx (from /static/vendor) polls the health panel every 10 s.
    with page.expect_response(lambda r: r.url == f"{url}/dashboard/health", timeout=15_000) as refresh:
        pass
    health = refresh.value
    assert health.ok, health.status
    assert health.request.headers.get("hx-request") == "true"
    assert health.request.headers.get("x-csrf-token") == csrf
    expect(page.locator("#health .tile h2")).to_have_text(TILES)  # swapped in, still whole
    expect(page.locator("#health")).to_have_count(1)

    visit("/audit")
    visit("/audit?action=auth&outcome=failure")
    visit("/audit?since=not-a-date", 400)             # audit page with a field error
    visit("/about")
    expect(page.get_by_role("heading", name="About this appliance")).to_be_visible()
    visit("/nonexistent", 404)                         # error page, signed in
    visit("/dashboard")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{url}/login")

    # Every page pulled its assets from the appliance and they all arrived.
    for asset in ("/static/app.css", "/static/vendor/htmx.min.js", "/static/app.js"):
        assert any(r.status == 200 for r in watch.seen(asset)), (asset, [(r.path, r.status) for r in watch.responses])
    assert len(watch.seen("/dashboard/health")) >= 1

    assert watch.external == [], f"requests to other hosts: {watch.external}"
    assert watch.failures() == [], f"failed requests: {watch.failures()}"
    assert watch.subresource_errors() == [], f"assets or htmx calls refused: {watch.subresource_errors()}"
    assert watch.csp == [], f"CSP violations: {watch.csp}"
    assert watch.csp_console() == [], f"CSP console messages: {watch.csp_console()}"
    assert watch.page_errors == [], f"page errors: {watch.page_errors}"
    # Chromium logs "Failed to load resource: ... status of N" for deliberate error pages; nothing else is allowed.
    unexpected = [m for m in watch.console_errors()
                  if not (m[2] in expected_status and f"status of {expected_status[m[2]]}" in m[1])]
    assert unexpected == [], f"console errors: {unexpected}"

    # Control: the detectors above do see an external request and a CSP violation.
    probe = context.new_page()
    probe.goto("/login")
    with pytest.raises(Exception):
        probe.goto("https://cdn.example.net/font.woff2")
    probe.goto("/login")
    probe.evaluate("""() => { const s = document.createElement("style"); s.textContent = "body{color:red}";
                              document.head.appendChild(s); }""")
    probe.wait_for_timeout(200)
    assert watch.external == ["https://cdn.example.net/font.woff2"], watch.external
    assert watch.csp and watch.csp[0]["directive"].startswith("style-src"), watch.csp
    assert watch.csp_console(), watch.console


def test_setup_and_signin_errors_are_shown_in_place(appliance, context):
    page = context.new_page()
    url = appliance.url

    # Wrong setup code: inline error at the code field, username kept, secrets not echoed.
    page.goto("/setup")
    fill_setup(page, "AAAAA-BBBBB-CCCCC-DDDDD", username="alice-admin")
    expect(page).to_have_url(f"{url}/setup")
    code = page.locator("#f-code")
    code_error = page.locator("#e-code")
    expect(code_error).to_have_text("Wrong setup code. Copy it from the console or the setup-code file.")
    expect(page.locator(".field.invalid").filter(has=code)).to_have_count(1)
    expect(page.locator(".field.invalid").filter(has=code).locator("#e-code")).to_have_count(1)  # next to the field
    expect(code).to_have_attribute("aria-invalid", "true")
    expect(code).to_have_attribute("aria-describedby", re.compile(r"(^|\s)e-code(\s|$)"))
    expect(code).to_have_value("")                    # the code is never echoed back
    expect(page.get_by_label("Administrator username")).to_have_value("alice-admin")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    expect(page.get_by_label("Repeat the password")).to_have_value("")
    expect(page.locator("#f-username")).not_to_have_attribute("aria-invalid", "true")

    # Now set up for real; a wrong password and an unknown user get the same message.
    fill_setup(page, appliance.setup_code())
    expect(page).to_have_url(f"{url}/login?setup=done")
    messages = []
    for username, password in ((ADMIN, "wrong password, quite long"), ("nobody-here", "wrong password, quite long")):
        page.goto("/login")
        sign_in(page, username, password)
        expect(page).to_have_url(f"{url}/login")
        alert = page.get_by_role("alert")
        expect(alert).to_have_text(UNIFORM_LOGIN_FAILURE)
        expect(page.get_by_label("Username")).to_have_value(username)
        expect(page.get_by_label("Password")).to_have_value("")
        messages.append(page.locator("main").inner_text())
    assert messages[0].replace(ADMIN, "X") == messages[1].replace("nobody-here", "X")


def test_sign_in_with_keyboard_only(appliance, context):
    with appliance.client() as client:
        assert do_setup(client, appliance.setup_code()).status_code == 303
    page = context.new_page()
    page.goto("/login")
    keyboard = page.keyboard

    def focused() -> str:
        return page.evaluate("() => { const e = document.activeElement;"
                             " return e.id || e.textContent.trim() || e.tagName; }")

    keyboard.press("Tab")
    assert focused() == "Skip to content"
    keyboard.press("Tab")
    assert focused() == "f-username"
    keyboard.type(ADMIN)
    keyboard.press("Tab")
    assert focused() == "f-password"
    keyboard.type(ADMIN_PASSWORD)
    keyboard.press("Tab")
    assert focused() == "Sign in"
    keyboard.press("Shift+Tab")
    assert focused() == "f-password"
    keyboard.press("Enter")
    expect(page).to_have_url(f"{appliance.url}/dashboard")
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
