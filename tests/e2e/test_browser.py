"""The web UI in a real headless Chromium against a real appliance over TLS.

- Main job in a browser (UI-1): setup, sign-in, dashboard, audit log filter, CSV
  export, sign-out; then Back shows nothing private, every non-static answer is
  `Cache-Control: no-store` (ACL-4) and the session is revoked server-side (AUTH-7).
- Air gap (PLAT-4) and strict CSP (ACL-4): every page loads only from the appliance,
  with no failed request, CSP violation, console error or script error; the htmx
  refresh of the dashboard works (htmx from /static/vendor, X-CSRF-Token header).
- Forms show errors in place (UI-2); sign-in failures are uniform (AUTH-4).
- Keyboard-only sign-in (UI-1).

TLS is verified: the browser pins the key that the appliance's CA vouches for (see
tests/e2e/browser.py); no test uses `ignore_https_errors`.

Every form submission goes through `submit()`. A browser sends `Origin: null` on a
form POST from a page served with `Referrer-Policy: no-referrer` (Fetch standard,
"serializing a request origin"); these tests are what proves the CSRF check accepts
that together with `Sec-Fetch-Site: same-origin`.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.conftest import ADMIN, ADMIN_PASSWORD, do_login, do_setup
from tests.e2e.browser import SESSION_COOKIE, Watch, assert_clean, fill_setup, open_browser, sign_in, submit

pytestmark = pytest.mark.browser

TILES = ["CPU", "Memory", "Data disk", "Database", "Certificate", "Version"]
CSV_HEADER = ["seq", "time_utc", "code", "action", "actor_type", "actor", "source", "target", "outcome", "details",
              "hash"]
UNIFORM_LOGIN_FAILURE = "Sign-in failed: wrong username or password, or the account is temporarily locked."
WRONG_CODE = "AAAAA-BBBBB-CCCCC-DDDDD"


@pytest.fixture
def browser(appliance):
    with open_browser(appliance) as b:
        yield b


@pytest.fixture
def context(browser, appliance):
    ctx = browser.new_context(base_url=appliance.url, accept_downloads=True)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def watch(context, appliance):
    return Watch.attach(context, appliance.url)


# ---- helpers -------------------------------------------------------------------------

def audit_actions(page) -> list[str]:
    return page.locator("table.audit tbody tr td:nth-child(3) code").all_inner_texts()


def audit_seqs(page) -> set[int]:
    return {int(s) for s in page.locator("table.audit tbody tr td:nth-child(1)").all_inner_texts()}


def assert_nothing_private(page) -> None:
    """The page shown after sign-out must not reveal any signed-in content."""
    body = page.locator("body").inner_text()
    for private in ("Dashboard", "Audit log", "auth.login.success", "setup.code.issue", "Sign out", f"{ADMIN} (admin)"):
        assert private not in body, f"{private!r} visible after sign-out at {page.url}:\n{body}"
    expect(page.locator("table.audit")).to_have_count(0)
    expect(page.locator("#health")).to_have_count(0)
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)


# ---- tests ---------------------------------------------------------------------------

def test_full_flow_setup_signin_dashboard_audit_export_signout(appliance, context, watch):
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

    # -> audit log through the main navigation
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    expect(page).to_have_url(f"{url}/audit")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    unfiltered = audit_actions(page)
    assert "setup.code.issue" in unfiltered and "auth.login.success" in unfiltered, unfiltered  # the filter matters

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
    csv_href = csv_link.get_attribute("href") or ""
    assert "action=auth" in csv_href, csv_href
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
    assert SESSION_COOKIE in session, context.cookies(url)
    with appliance.client(cookies={SESSION_COOKIE: session[SESSION_COOKIE]}, follow_redirects=False) as http:
        export = http.get(csv_href)
        assert export.status_code == 200 and export.text.startswith("seq,time_utc,"), export.status_code
        assert export.headers.get("cache-control") == "no-store", export.headers

    # -> sign out, then Back: nothing private may be shown
    submit(page, page.get_by_role("button", name="Sign out").click)
    expect(page).to_have_url(f"{url}/login")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert_nothing_private(page)
    for _ in range(2):  # back to the filtered audit page, then to the unfiltered one
        page.go_back(wait_until="load")
        expect(page).to_have_url(f"{url}/login")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        assert_nothing_private(page)
    # Back asked the server again (no-store) and it refused: both revisits were redirected.
    assert [r.status for r in watch.seen("/audit")][-2:] == [303, 303], [(r.path, r.status) for r in watch.responses]

    # The session was revoked server-side, not just forgotten by the browser (AUTH-7).
    with appliance.client(cookies={SESSION_COOKIE: session[SESSION_COOKIE]}, follow_redirects=False) as http:
        stale = http.get("/dashboard")
        assert stale.status_code == 303 and stale.headers["location"] == "/login", stale.status_code

    # Every answer but static assets carried Cache-Control: no-store, signed-in pages included.
    signed_in = {r.path.split("?", 1)[0] for r in watch.responses if r.status == 200}
    assert {"/dashboard", "/audit"} <= signed_in, signed_in
    for r in watch.responses:
        if not r.path.startswith("/static/"):
            assert r.headers.get("cache-control") == "no-store", (r.path, r.status, r.headers)

    assert_clean(watch)


def test_no_external_requests_and_no_errors_on_any_page(appliance, context, watch):
    """PLAT-4 (and ACL-4's strict CSP): every page loads only from the appliance, cleanly.

    Setup and sign-in are done over HTTPS by the test, so this test does not depend on
    browser form posts (covered by the other tests, which also check cleanliness).
    """
    page = context.new_page()
    url = appliance.url
    error_pages: dict[str, int] = {}

    def visit(path: str, status: int = 200, final: str | None = None) -> None:
        response = page.goto(path)
        assert response is not None and response.status == status, (path, response and response.status)
        expect(page).to_have_url(f"{url}{final or path}")
        if status != 200:
            error_pages[page.url] = status

    # Signed out.
    visit("/", final="/setup")
    visit("/login", final="/setup")
    visit("/nonexistent", 404)
    with appliance.client() as http:
        assert do_setup(http, appliance.setup_code()).status_code == 303
        visit("/setup", final="/login")
        visit("/login?setup=done")
        assert do_login(http).status_code == 303
        token = http.cookies.get(SESSION_COOKIE)
    assert token
    context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": url, "secure": True, "httpOnly": True,
                          "sameSite": "Strict"}])

    # Signed in.
    visit("/", final="/dashboard")
    csrf = page.locator('input[name="_csrf"]').first.get_attribute("value")
    assert csrf
    # Let the dashboard sit: htmx (from /static/vendor) refreshes the health panel every 10 s.
    with page.expect_response(lambda r: r.url == f"{url}/dashboard/health", timeout=15_000) as refresh:
        pass
    health = refresh.value
    assert health.ok, health.status
    assert health.request.header_value("hx-request") == "true"
    assert health.request.header_value("x-csrf-token") == csrf
    expect(page.locator("#health")).to_have_count(1)              # swapped in place, not nested
    expect(page.locator("#health .tile h2")).to_have_text(TILES)

    visit("/audit")
    visit("/audit?action=auth&outcome=success")
    visit("/audit?since=2020-01-01T00%3A00&until=2019-01-01T00%3A00", 400)  # audit page with a field error
    expect(page.locator("#e-until")).to_be_visible()
    visit("/about")
    expect(page.get_by_role("heading", name="About this appliance")).to_be_visible()
    visit("/nonexistent", 404)
    visit("/login", final="/dashboard")

    # Every page pulled its assets from the appliance, and they all arrived.
    for asset in ("/static/app.css", "/static/vendor/htmx.min.js", "/static/app.js"):
        assert any(r.status == 200 for r in watch.seen(asset)), (asset, [(r.path, r.status) for r in watch.responses])
    refreshes = [r.status for r in watch.seen("/dashboard/health")]
    assert refreshes and all(s == 200 for s in refreshes), refreshes
    assert_clean(watch, error_pages)

    # Control: the detectors above do see a CSP violation and an external request.
    probe = context.new_page()
    probe.goto("/about")
    probe.evaluate("""() => { const s = document.createElement("style"); s.textContent = "body{color:red}";
                              document.head.appendChild(s); }""")
    for _ in range(40):  # the report arrives asynchronously through the binding
        if watch.csp:
            break
        probe.wait_for_timeout(50)
    assert watch.csp and watch.csp[0]["directive"].startswith("style-src"), watch.csp
    assert watch.csp_console(), watch.console
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        probe.goto("https://cdn.example.net/font.woff2")
    assert watch.external == ["https://cdn.example.net/font.woff2"], watch.external


def test_setup_and_signin_errors_are_shown_in_place(appliance, context, watch):
    page = context.new_page()
    url = appliance.url
    error_pages: dict[str, int] = {}

    # Wrong setup code: inline error at the code field, username kept, secrets not echoed.
    page.goto("/setup")
    response = fill_setup(page, WRONG_CODE, username="alice-admin")
    assert response.status == 400
    error_pages[page.url] = 400
    expect(page).to_have_url(f"{url}/setup")
    code = page.locator("#f-code")
    field = page.locator(".field.invalid").filter(has=code)
    expect(field).to_have_count(1)
    expect(field.locator("p.error#e-code")).to_have_text(
        "Wrong setup code. Copy it from the console or the setup-code file.")  # in the code field's own block
    expect(code).to_have_attribute("aria-invalid", "true")
    expect(code).to_have_attribute("aria-describedby", re.compile(r"(^|\s)e-code(\s|$)"))
    expect(page.locator(".field.invalid")).to_have_count(1)   # no other field is blamed
    expect(code).to_have_value("")                            # the code is never echoed back
    expect(page.get_by_label("Administrator username")).to_have_value("alice-admin")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    expect(page.get_by_label("Repeat the password")).to_have_value("")

    # Now set up for real; a wrong password and an unknown user get the same answer.
    assert fill_setup(page, appliance.setup_code()).status == 303
    expect(page).to_have_url(f"{url}/login?setup=done")
    answers = []
    for username in (ADMIN, "nobody-here"):
        page.goto("/login")
        response = sign_in(page, username, "wrong password, quite long")
        assert response.status == 401
        error_pages[page.url] = 401
        expect(page).to_have_url(f"{url}/login")
        expect(page.get_by_role("alert")).to_have_text(UNIFORM_LOGIN_FAILURE)
        expect(page.get_by_label("Username")).to_have_value(username)
        expect(page.get_by_label("Password")).to_have_value("")
        answers.append(page.locator("main").inner_html().replace(f'value="{username}"', 'value="X"'))
    # Same page apart from the echoed username (the CSRF token is the browser's pre-session one).
    assert answers[0] == answers[1]
    assert_clean(watch, error_pages)


def test_sign_in_with_keyboard_only(appliance, context, watch):
    with appliance.client() as http:
        assert do_setup(http, appliance.setup_code()).status_code == 303
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
    assert submit(page, lambda: keyboard.press("Enter")).status == 303
    expect(page).to_have_url(f"{appliance.url}/dashboard")
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
    assert_clean(watch)
