"""After a password re-check (step-up, AUTH-8) the browser goes back to the page that held the form.

A form submitted after the 5-minute step-up window lapsed is sent to /reauth; once the password
is confirmed, the browser must land on the page the form was on, never on the form's POST-only
action URL (which answers 405 to the browser's GET). The window lapses honestly: the real server
runs on a frozen clock (tests/auth/clocked.py) that the test moves past it between loading the page
and submitting the form.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from tests.auth.clocked import ClockedAppliance
from tests.conftest import ADMIN_PASSWORD, FAST_HASH_CONFIG, csrf_of

PAST_THE_WINDOW = 6 * 60.0  # the step-up window is 5 minutes; the idle timeout (15) does not fire

# (page holding the form, the form's action, multipart?)
FORMS = [
    ("/settings/certificates", "/settings/certificates/import", True),
    ("/settings/certificates", "/settings/certificates/rollback", False),
    ("/settings/certificates", "/settings/certificates/regenerate", False),
    ("/updates", "/updates/apply", False),
    ("/updates", "/updates/rollback", False),
]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("return-page")
    (root / "stick").mkdir()
    (root / "stick" / "outpost-9.9.9.opkg").write_bytes(b"never read: the step-up check comes first")
    # a bundle on the "USB stick", so the updates page shows its install form
    config = FAST_HASH_CONFIG + f'\n[updates]\nmedia_dir = "{root / "stick"}"\n'
    appliance = ClockedAppliance(root / "data", config)
    try:
        appliance.set_up_admin()
        yield appliance
    finally:
        appliance.close()


@pytest.mark.parametrize("page, action, multipart", FORMS, ids=[f[1] for f in FORMS])
def test_reauth_returns_to_the_page_that_held_the_form(box, page, action, multipart):
    with box.admin() as c:
        loaded = c.get(page)
        assert loaded.status_code == 200, loaded.text
        assert f'action="{action}"' in loaded.text or f'formaction="{action}"' in loaded.text
        box.clock.advance(PAST_THE_WINDOW)  # the user reads the page; the step-up window lapses
        fields = {"_csrf": csrf_of(loaded.text)}
        if multipart:
            r = c.post(action, data=fields, files={"cert": ("", b"", "application/octet-stream")})
        else:
            r = c.post(action, data={**fields, "file": "outpost-9.9.9.opkg"} if action == "/updates/apply" else fields)
        assert r.status_code == 303 and r.headers["location"].startswith("/reauth?next="), r.text
        reauth = c.get(r.headers["location"])
        assert reauth.status_code == 200
        nxt = re.search(r'name="next" value="([^"]*)"', reauth.text).group(1)
        done = c.post("/reauth", data={"_csrf": csrf_of(reauth.text), "next": nxt, "secret": ADMIN_PASSWORD})
        assert done.status_code == 303
        back = done.headers["location"]
        landed = c.get(back)
        assert landed.status_code == 200, f"GET {back} after the re-check answered {landed.status_code}"
        assert unquote(back) == page, f"sent to {back} after the re-check, not to the page with the form"
        assert f'action="{action}"' in landed.text or f'formaction="{action}"' in landed.text


def test_every_browser_form_route_names_a_page_that_exists(box):
    """Each signed-in browser POST route names the page holding its form, and that page is a GET route
    (a typo, or a new route without `on_page`, fails here rather than with a 405 or a 404 after /reauth)."""
    from appliance.web import create_app, guards
    from appliance.web.ui.forms import RETURN_TO

    app = create_app(box.services)
    gets = [route.path_format for route in app.routes if "GET" in getattr(route, "methods", ())]
    missing, dangling = [], []
    for route in app.routes:
        for method, handler in getattr(route, "route_handler_map", {}).items():
            handler = handler[0] if isinstance(handler, tuple) else handler
            if method != "POST" or route.path.startswith("/api/") or guards.access_kinds(handler) == ["public"]:
                continue
            page = handler.opt.get(RETURN_TO)
            if not page:
                missing.append(route.path)
            elif page not in gets:
                dangling.append(f"{route.path} -> {page}")
    assert not missing, f"browser POST routes without on_page(...): {missing}"
    assert not dangling, f"on_page names no GET route: {dangling}"
