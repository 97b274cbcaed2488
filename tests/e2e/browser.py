"""Headless Chromium for the end-to-end browser tests (PLAT-4, UI-1, ACL-4).

The browser is Debian's /usr/bin/chromium driven by Playwright (Playwright cannot
download its own browsers here). TLS stays verified: before launching we connect to
the appliance with a client that trusts only the appliance's own CA (`ca.pem`), take
the leaf certificate it served, and pin that key in Chromium with
`--ignore-certificate-errors-spki-list`. Chromium then accepts that one key and
nothing else (a different key fails with ERR_CERT_AUTHORITY_INVALID), so we never
need `ignore_https_errors=True`. The flag waives every certificate error for that key
(name, dates, chain), so name and chain checks are the job of the pinning client here
and of the TLS tests. (Importing the CA into an NSS database would need `certutil`,
which is not installed.)

`--host-resolver-rules` makes every name except localhost unresolvable, so even a
request the page-level router could not see (a browser-internal one) cannot leave
the machine.

`Watch` records everything a test wants to assert about a browser context: requests
to any host other than the appliance (aborted), failed requests, console errors,
CSP violations (from the console and from `securitypolicyviolation` events reported
by an init script), page errors, and every appliance response with its headers.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import sync_playwright

from tests.conftest import ADMIN, ADMIN_PASSWORD

CHROMIUM = "/usr/bin/chromium"
SESSION_COOKIE = "__Host-outpost"  # AUTH-7

BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost"]

# Runs in every document before the page's own scripts. Init scripts are injected by the
# automation protocol, so the page's CSP does not apply to them. Violations are reported
# straight to Python through an exposed binding: nothing is lost when the page navigates.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__outpostCsp({directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile,
                       line: e.lineNumber, sample: e.sample, document: e.documentURI});
}, true);
"""


def require_chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"missing tool: chromium ({CHROMIUM}, Debian package 'chromium'; installed by .ci/run)")
    return CHROMIUM


def spki_pin(appliance) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the leaf certificate the appliance serves.

    The certificate is fetched over a connection verified against the appliance's CA
    and host name, so the pin is only ever a key that the CA vouches for.
    """
    context = appliance.tls()
    with socket.create_connection(("127.0.0.1", appliance.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=urlsplit(appliance.url).hostname) as tls:
        der = tls.getpeercert(binary_form=True)
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def launch(playwright, appliance):
    """A headless Chromium that trusts exactly the appliance's TLS key."""
    return playwright.chromium.launch(
        executable_path=require_chromium(),
        args=[*BASE_ARGS, f"--ignore-certificate-errors-spki-list={spki_pin(appliance)}"])


@dataclass
class Seen:
    """One appliance response, with the headers captured when it arrived."""

    path: str  # with the query string, if any
    status: int
    headers: dict[str, str]
    request_headers: dict[str, str]
    resource_type: str


@dataclass
class Watch:
    """What a browser context did; attach with `Watch.attach(context, appliance_url)`."""

    origin: str
    external: list[str] = field(default_factory=list)         # requests to other hosts (aborted)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (url, failure text)
    console: list[tuple[str, str, str]] = field(default_factory=list)  # (type, text, page url)
    csp: list[dict] = field(default_factory=list)              # securitypolicyviolation events
    page_errors: list[str] = field(default_factory=list)
    responses: list[Seen] = field(default_factory=list, repr=False)  # appliance responses, in order

    @classmethod
    def attach(cls, context, appliance_url: str) -> Watch:
        split = urlsplit(appliance_url)
        watch = cls(origin=f"{split.scheme}://{split.netloc}")
        context.route("**/*", watch._route)
        context.expose_binding("__outpostCsp", lambda source, info: watch.csp.append(info))
        context.add_init_script(CSP_LISTENER)
        context.on("requestfailed", lambda r: watch.failed.append((r.url, r.failure or "")))
        context.on("response", watch._response)
        context.on("page", watch.watch_page)
        return watch

    def watch_page(self, page) -> None:
        page.on("console", lambda m: self.console.append((m.type, m.text, page.url)))
        page.on("pageerror", lambda e: self.page_errors.append(f"{page.url}: {e}"))

    def _route(self, route) -> None:
        url = route.request.url
        split = urlsplit(url)
        if f"{split.scheme}://{split.netloc}" != self.origin:
            self.external.append(url)
            route.abort("blockedbyclient")
        else:
            route.continue_()

    def _response(self, response) -> None:
        if response.url.startswith(self.origin + "/"):
            split = urlsplit(response.url)
            self.responses.append(Seen(
                path=split.path + (f"?{split.query}" if split.query else ""), status=response.status,
                headers=dict(response.headers), request_headers=dict(response.request.headers),
                resource_type=response.request.resource_type))

    def failures(self) -> list[tuple[str, str]]:
        """Failed requests, except the appliance's own loads that Chromium cancelled itself.

        Chromium cancels (net::ERR_ABORTED) a load still in flight when the page navigates
        away, typically the favicon; that is the browser's doing, not a failure. Any other
        error (refused, blocked by the client, by CSP, by CORP, TLS...) counts.
        """
        return [(u, f) for u, f in self.failed if not (u.startswith(self.origin + "/") and f == "net::ERR_ABORTED")]

    def subresource_errors(self) -> list[Seen]:
        """Appliance answers >= 400 to anything but a top-level page (an asset or an htmx call)."""
        return [r for r in self.responses if r.status >= 400 and r.resource_type != "document"]

    def csp_console(self) -> list[tuple[str, str, str]]:
        return [m for m in self.console if "content security policy" in m[1].lower()]

    def console_errors(self) -> list[tuple[str, str, str]]:
        return [m for m in self.console if m[0] in ("error", "assert")]

    def seen(self, path: str) -> list[Seen]:
        """Appliance responses whose path (query ignored) is `path`."""
        return [r for r in self.responses if r.path.split("?", 1)[0] == path]


@contextmanager
def open_browser(appliance):
    """Headless Chromium trusting this appliance (see launch), closed afterwards."""
    require_chromium()
    with sync_playwright() as p:
        b = launch(p, appliance)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def admin_page(appliance, timeout_ms: int = 10_000):
    """Set the appliance up, then yield (page, watch): Chromium signed in as the admin,
    every request watched (external hosts, failures, CSP). The browser is closed after."""
    from tests.conftest import do_setup

    require_chromium()
    with appliance.client() as client:
        assert do_setup(client, appliance.setup_code()).status_code == 303
    with sync_playwright() as p:
        browser = launch(p, appliance)
        try:
            context = browser.new_context(base_url=appliance.url)
            context.set_default_timeout(timeout_ms)
            watch = Watch.attach(context, appliance.url)
            page = context.new_page()
            page.goto("/login")
            sign_in(page)
            yield page, watch
        finally:
            browser.close()


# ---- page actions and checks shared by the browser tests -------------------------------------

def submit(page, action):
    """Run `action` (a click or key press that submits a form); return the POST's response.
    A 403 here means the CSRF check refused the browser's own same-origin form post.
    """
    with page.expect_response(lambda r: r.request.method == "POST") as info:
        action()
    response = info.value
    assert response.status != 403, f"browser form POST refused (Origin: {response.request.header_value('origin')})"
    page.wait_for_load_state("load")
    return response


def fill_setup(page, code: str, username: str = ADMIN, password: str = ADMIN_PASSWORD):
    page.get_by_label("Setup code").fill(code)
    page.get_by_label("Administrator username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat the password").fill(password)
    return submit(page, page.get_by_role("button", name="Create administrator").click)


def sign_in(page, username: str = ADMIN, password: str = ADMIN_PASSWORD):
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    return submit(page, page.get_by_role("button", name="Sign in").click)


def assert_clean(watch: Watch, error_pages: dict[str, int] | None = None) -> None:
    """Nothing left the appliance, nothing failed, no CSP violation, no script or console error.

    `error_pages` maps a page URL to the 4xx status it was deliberately answered with;
    Chromium logs "Failed to load resource: ... status of N" for those, and only those
    console errors are tolerated.
    """
    error_pages = error_pages or {}
    assert watch.external == [], f"requests to other hosts: {watch.external}"
    assert watch.failures() == [], f"failed requests: {watch.failures()}"
    assert watch.subresource_errors() == [], f"assets or htmx calls refused: {watch.subresource_errors()}"
    assert watch.csp == [], f"CSP violations: {watch.csp}"
    assert watch.csp_console() == [], f"CSP console messages: {watch.csp_console()}"
    assert watch.page_errors == [], f"page errors: {watch.page_errors}"
    unexpected = [m for m in watch.console_errors()
                  if not (m[2] in error_pages and f"status of {error_pages[m[2]]}" in m[1])]
    assert unexpected == [], f"console errors: {unexpected}"
