"""Setup, sign-in and sign-out pages (AUTH-1, AUTH-7)."""

from __future__ import annotations

from litestar import Request, Response, get, post

from appliance.auth.errors import LoginFailedError, SetupError
from appliance.auth.models import SecondFactorRequired
from appliance.crypto.totp import TOTPError
from appliance.errors import RateLimitedError, ValidationError
from appliance.web.cookies import cleared, ensure_pre_session, session_cookie, with_pre_session
from appliance.web.deps import client, principal, principal_or_none, services, user_agent
from appliance.web.guards import authenticated, public
from appliance.web.security import PRE_SESSION_COOKIE, SESSION_COOKIE
from appliance.web.ui.forms import PENDING, on_page, page, redirect, text


@get("/", guards=[public], name="root")
async def root(request: Request) -> Response:
    if await services(request).auth.setup.setup_required():
        return redirect("/setup")
    return redirect("/dashboard" if principal_or_none(request) else "/login")


@get("/setup", guards=[public], name="setup_page")
async def setup_page(request: Request) -> Response:
    if not await services(request).auth.setup.setup_required():
        return redirect("/login")
    token = ensure_pre_session(request)
    return with_pre_session(page(request, "setup.html", errors={}, values={}), token)


@post("/setup", guards=[public], name="setup_submit")
async def setup_submit(request: Request) -> Response:
    svc = services(request)
    form = await request.form()
    values, errors, message, status = {}, {}, "", 400
    try:
        values = {k: text(form, k) for k in ("code", "username")}
        await svc.auth.setup.complete_setup(code=values["code"], username=values["username"].strip(),
                                           password=text(form, "password"), confirm=text(form, "confirm"),
                                           source=client(request), code_file=svc.setup_code_file)
    except ValidationError as exc:
        errors, message = exc.details, exc.message
    except SetupError as exc:
        errors, message = exc.details, exc.message
    except RateLimitedError as exc:
        message, status = exc.message, 429
    else:
        return redirect("/login?setup=done")
    values.pop("code", None)  # never echo the setup code back
    return page(request, "setup.html", status=status, errors=errors, values=values,
                  message=message)


@get("/login", guards=[public], name="login_page")
async def login_page(request: Request) -> Response:
    svc = services(request)
    if await svc.auth.setup.setup_required():
        return redirect("/setup")
    if principal_or_none(request):
        return redirect("/dashboard")
    token = ensure_pre_session(request)
    notice = ("Setup is complete. Sign in with the account you just created."
              if request.query_params.get("setup") else "")
    return with_pre_session(page(request, "login.html", values={}, notice=notice), token)


@post("/login", guards=[public], name="login_submit")
async def login_submit(request: Request) -> Response:
    svc = services(request)
    form = await request.form()
    username, retry = "", None
    try:
        username = text(form, "username").strip()
        session = await svc.auth.sessions.login(username=username, password=text(form, "password"),
                                            source=client(request),
                                            user_agent=user_agent(request),
                                            pre_session=request.cookies.get(PRE_SESSION_COOKIE, ""))
    except (LoginFailedError, ValidationError) as exc:
        message, status = (exc.message if isinstance(exc, LoginFailedError) else "Sign-in failed."), 401
    except RateLimitedError as exc:  # 429 throttled, or 503 when the password-check queue is full
        message, status, retry = exc.message, exc.status, exc.retry_after
    else:
        if isinstance(session, SecondFactorRequired):
            return redirect("/login/2fa")  # no session yet: the pending state is bound to the pre-session cookie
        return _signed_in(session)
    response = page(request, "login.html", status=status, values={"username": username},
                      message=message)
    if retry:
        response.headers["Retry-After"] = str(retry)
    return response


def _signed_in(session) -> Response:
    response = redirect("/dashboard")
    response.set_cookie(session_cookie(session.token))
    response.set_cookie(cleared(PRE_SESSION_COOKIE))
    return response


@get("/login/2fa", guards=[public], name="login_2fa_page")
async def login_2fa_page(request: Request) -> Response:
    if principal_or_none(request):
        return redirect("/dashboard")
    if not request.cookies.get(PRE_SESSION_COOKIE):
        return redirect("/login")
    return page(request, "login_2fa.html", errors={})


@post("/login/2fa", guards=[public], name="login_2fa_submit")
async def login_2fa_submit(request: Request) -> Response:
    """Second sign-in step (AUTH-6): a TOTP code or a recovery code; the session starts only now."""
    svc = services(request)
    form = await request.form()
    errors, status = {}, 400
    try:
        session = await svc.auth.sessions.login_second_factor(
            pre_session=request.cookies.get(PRE_SESSION_COOKIE, ""), code=text(form, "code"),
            source=client(request), user_agent=user_agent(request))
    except LoginFailedError:
        message = "This sign-in has expired or had too many wrong codes. Start again with your password."
        return page(request, "login.html", status=401, values={}, message=message)
    except (TOTPError, ValidationError) as exc:
        message = "The code was not accepted."
        errors = {"code": exc.message if isinstance(exc, TOTPError) else "Enter the code."}
    except RateLimitedError as exc:
        message, status = exc.message, 429
    else:
        return _signed_in(session)
    return page(request, "login_2fa.html", status=status, errors=errors, message=message)


@post("/logout", guards=[authenticated], name="logout", opt=on_page("/dashboard", **PENDING))
async def logout(request: Request) -> Response:
    await services(request).auth.sessions.logout(principal(request), client(request))
    response = redirect("/login")
    response.set_cookie(cleared(SESSION_COOKIE))
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    return response


ROUTES = [root, setup_page, setup_submit, login_page, login_submit, login_2fa_page, login_2fa_submit, logout]
