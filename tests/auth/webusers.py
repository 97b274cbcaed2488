"""Users made through the web UI of a real appliance: the admin's Users page hands out a
temporary password, and the new user's first sign-in forces a change of it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx

from tests.conftest import Appliance, csrf_of, do_login

NEW = "a brand new passphrase for web tests"


def create_user(admin: httpx.Client, username: str, role: str = "viewer") -> str:
    """Create a user on the Users page; returns the temporary password shown once."""
    page = admin.get("/users")
    r = admin.post("/users", data={"_csrf": csrf_of(page.text), "username": username, "role": role})
    assert r.status_code == 200, r.text
    return re.search(r'id="temporary-password">([^<]+)<', r.text).group(1)


@contextlib.contextmanager
def signed_in(app: Appliance, username: str, password: str, new: str = NEW) -> Iterator[httpx.Client]:
    """A client for a new user after the forced password change."""
    with app.client() as c:
        yield change_password(c, username, password, new)


def change_password(c: httpx.Client, username: str, password: str, new: str) -> httpx.Client:
    """Sign in with the temporary password and make the forced change; returns the client."""
    assert do_login(c, username, password).status_code == 303
    r = c.get("/dashboard")
    assert r.status_code == 303 and r.headers["location"] == "/account/password"
    page = c.get("/account/password")
    r = c.post("/account/password", data={"_csrf": csrf_of(page.text), "current": password, "new": new, "confirm": new})
    assert r.status_code == 303, r.text
    return c


def user_id(admin: httpx.Client, username: str) -> int:
    return int(re.search(rf'href="/users/(\d+)">{username}<', admin.get("/users").text).group(1))
