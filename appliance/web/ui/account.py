"""My account: password, two-factor sign-in, sessions, re-authentication (AUTH-3, -5..8).

Thin handlers over AuthService. Routes a user must reach while a password change or
2FA set-up is pending carry `PENDING` in their opt; everything else redirects there
(guards.PendingStepError). Sensitive actions raise ReauthRequiredError, which sends
browsers to /reauth and back to the page they were on (web/ui/forms.py, `step_redirect`).
"""

from __future__ import annotations

import io

import segno
from litestar import Request, Response, get, post

from appliance.crypto.totp import TOTPError
from appliance.errors import ConflictError, RateLimitedError, ValidationError
from appliance.web.cookies import session_cookie
from appliance.web.deps import client, principal, services, switch_principal, user_agent
from appliance.web.guards import authenticated
from appliance.web.redirects import safe_next  # the one rule for `next` (no open redirect)
from appliance.web.ui.forms import PENDING, on_page, page, redirect, text


def with_session(response: Response, session) -> Response:
    """Set the rotated session cookie (new id after a privilege change)."""
    response.set_cookie(session_cookie(session.token))
    return response


# ---- overview and password ------------------------------------------------------------

@get("/account", guards=[authenticated], name="account")
async def account(request: Request) -> Response:
    who = principal(request)
    auth = services(request).auth
    notice = "Your password was changed; your other sessions were signed out." \
        if request.query_params.get("changed") == "password" else ""
    return page(request, "account/index.html", user=await auth.accounts.get_user(who, who.user_id),
                codes_left=await auth.totp.recovery_codes_left(who) if who.totp_enabled else 0,
                policy=auth.policy.current, request_notice=notice)


@get("/account/password", guards=[authenticated], name="account_password", opt=PENDING)
async def password_page(request: Request) -> Response:
    return page(request, "account/password.html", errors={}, policy=services(request).auth.policy.current)


@post("/account/password", guards=[authenticated], name="account_password_submit",
      opt=on_page("/account/password", **PENDING))
async def password_submit(request: Request) -> Response:
    who = principal(request)
    auth = services(request).auth
    form = await request.form()
    try:
        session = await auth.accounts.change_password(who, current=text(form, "current"), new=text(form, "new"),
                                             confirm=text(form, "confirm"), source=client(request),
                                             user_agent=user_agent(request))
    except ValidationError as exc:
        return page(request, "account/password.html", status=400, errors=exc.details, message=exc.message,
                    policy=auth.policy.current)
    except RateLimitedError as exc:
        return page(request, "account/password.html", status=429, errors={}, message=exc.message,
                    policy=auth.policy.current)
    nxt = "/account/2fa" if session.principal.needs_totp_enrolment else "/account?changed=password"
    return with_session(redirect(nxt), session)


# ---- two-factor sign-in ------------------------------------------------------------------

def qr_svg(uri: str) -> str:
    """The otpauth URI as inline SVG markup, rendered locally by segno (no network).

    segno's SVG carries only presentation attributes (no style attribute or element),
    so the strict CSP (no inline style) holds."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=5, border=4, xmldecl=False, svgns=True,
                                    title="QR code for your authenticator app", nl=False)
    return buffer.getvalue().decode()


@get("/account/2fa", guards=[authenticated], name="account_2fa", opt=PENDING)
async def totp_page(request: Request) -> Response:
    return await _totp_view(request)


async def _totp_view(request: Request, errors: dict | None = None, message: str = "", status: int = 200) -> Response:
    who = principal(request)
    auth = services(request).auth
    pending = await auth.totp.pending_enrolment(who)
    return page(request, "account/2fa.html", status=status, pending=pending,
                qr=qr_svg(pending.uri) if pending else "", errors=errors or {}, message=message,
                codes_left=await auth.totp.recovery_codes_left(who) if who.totp_enabled else 0,
                required=who.needs_totp_enrolment or auth.policy.totp_required(who.role))


@post("/account/2fa/start", guards=[authenticated], name="account_2fa_start", opt=on_page("/account/2fa", **PENDING))
async def totp_start(request: Request) -> Response:
    await services(request).auth.totp.begin_enrolment(principal(request), source=client(request))
    return redirect("/account/2fa")


@post("/account/2fa/confirm", guards=[authenticated], name="account_2fa_confirm",
      opt=on_page("/account/2fa", **PENDING))
async def totp_confirm(request: Request) -> Response:
    who = principal(request)
    form = await request.form()
    try:
        done = await services(request).auth.totp.confirm_enrolment(who, code=text(form, "code"), source=client(request),
                                                                   user_agent=user_agent(request))
    except (TOTPError, ValidationError) as exc:
        return await _totp_view(request, errors={"code": exc.message}, message="The code was not accepted.",
                                  status=400)
    except RateLimitedError as exc:
        return await _totp_view(request, message=exc.message, status=429)
    switch_principal(request, done.session.principal)  # render with the new session's CSRF token
    response = page(request, "account/recovery.html", codes=done.recovery_codes, first=True)
    return with_session(response, done.session)


@post("/account/2fa/recovery", guards=[authenticated], name="account_2fa_recovery", opt=on_page("/account/2fa"))
async def totp_recovery(request: Request) -> Response:
    try:
        codes = await services(request).auth.totp.regenerate_recovery_codes(principal(request), source=client(request))
    except ConflictError as exc:
        return await _totp_view(request, message=exc.message, status=409)
    return page(request, "account/recovery.html", codes=codes, first=False)


@post("/account/2fa/disable", guards=[authenticated], name="account_2fa_disable", opt=on_page("/account/2fa"))
async def totp_disable(request: Request) -> Response:
    try:
        session = await services(request).auth.totp.disable(principal(request), source=client(request),
                                                            user_agent=user_agent(request))
    except ConflictError as exc:
        return await _totp_view(request, message=exc.message, status=409)
    return with_session(redirect("/account/2fa"), session)


# ---- sessions ------------------------------------------------------------------------------

@get("/account/sessions", guards=[authenticated], name="account_sessions")
async def sessions_page(request: Request) -> Response:
    sessions = await services(request).auth.sessions.list_sessions(principal(request))
    return page(request, "account/sessions.html", sessions=sessions, base="/account/sessions",
                notice=request.query_params.get("done", "")[:40])


@post("/account/sessions/{handle:str}/revoke", guards=[authenticated], name="account_session_revoke",
      opt=on_page("/account/sessions"))
async def session_revoke(request: Request, handle: str) -> Response:
    who = principal(request)
    await services(request).auth.sessions.revoke_session(who, handle, source=client(request))
    if handle == who.handle:
        return redirect("/login")
    return redirect("/account/sessions?done=revoked")


@post("/account/sessions/revoke-others", guards=[authenticated], name="account_sessions_revoke_others",
      opt=on_page("/account/sessions"))
async def sessions_revoke_others(request: Request) -> Response:
    await services(request).auth.sessions.revoke_other_sessions(principal(request), source=client(request))
    return redirect("/account/sessions?done=others")


# ---- re-authentication (step-up) -----------------------------------------------------------

# Reachable while a 2FA set-up is pending: enrolment itself needs a fresh step-up.
@get("/reauth", guards=[authenticated], name="reauth_page", opt=PENDING)
async def reauth_page(request: Request) -> Response:
    return page(request, "account/reauth.html", errors={}, next=safe_next(request.query_params.get("next")))


@post("/reauth", guards=[authenticated], name="reauth_submit", opt=on_page("/reauth", **PENDING))
async def reauth_submit(request: Request) -> Response:
    form = await request.form()
    nxt = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    try:
        await services(request).auth.stepup.reauthenticate(principal(request), secret=text(form, "secret"),
                                                    source=client(request))
    except ValidationError as exc:
        return page(request, "account/reauth.html", status=400, errors=exc.details, message=exc.message, next=nxt)
    except RateLimitedError as exc:
        return page(request, "account/reauth.html", status=429, errors={}, message=exc.message, next=nxt)
    return redirect(nxt)


ROUTES = [account, password_page, password_submit, totp_page, totp_start, totp_confirm, totp_recovery, totp_disable,
          sessions_page, session_revoke, sessions_revoke_others, reauth_page, reauth_submit]
