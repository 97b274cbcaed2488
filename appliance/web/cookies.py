"""The session and pre-session cookies (AUTH-7): __Host- prefix, Secure, HttpOnly, SameSite=Strict, Path=/."""

from __future__ import annotations

from litestar import Request, Response
from litestar.datastructures import Cookie

from appliance.crypto import tokens
from appliance.web.security import PRE_SESSION_COOKIE, SESSION_COOKIE


def _cookie(name: str, value: str, max_age: int | None = None) -> Cookie:
    return Cookie(key=name, value=value, path="/", secure=True, httponly=True, samesite="strict", max_age=max_age)


def session_cookie(token: str) -> Cookie:
    return _cookie(SESSION_COOKIE, token)  # no Max-Age: gone with the browser; server enforces timeouts


def cleared(name: str) -> Cookie:
    return _cookie(name, "", max_age=0)


def ensure_pre_session(request: Request) -> str | None:
    """Token for forms shown before sign-in; returns a new one if the browser has none."""
    if request.cookies.get(PRE_SESSION_COOKIE):
        return None
    token = tokens.new_token(32)
    request.scope["outpost.pre_csrf"] = token  # type: ignore[typeddict-unknown-key]  # ours; web/render.py reads it
    return token


def with_pre_session(response: Response, new_token: str | None) -> Response:
    if new_token:
        response.set_cookie(_cookie(PRE_SESSION_COOKIE, new_token, max_age=3600))
    return response
