"""Shared pieces of the browser pages (issue 12, point 4): form fields, pages, redirects, and
the page a form lives on.

- `text(form, name)` / `fields(request)`: form fields as bounded text; anything else is a
  ValidationError naming the field, before any work is done.
- `page(request, template, ...)`: render a template with the principal, its CSRF token and
  the navigation it may see (web/render.py).
- `redirect(location)`: 303 See Other (the answer to a successful POST).
- `on_page(page)`: every browser POST route names the page that holds its form, e.g.
  `opt=on_page("/users/{user_id}")` (path parameters filled in from the request). When the
  step-up window (AUTH-8) lapsed between loading that page and submitting the form, the
  browser is sent to /reauth and, once the password is confirmed, back to that page. It used
  to be guessed from the form's URL, which sent some forms back to their POST-only action
  (405). tests/web/test_return_page.py holds every browser POST route to this.
"""

from __future__ import annotations

from urllib.parse import quote

from litestar import Request, Response
from litestar.types import ExceptionHandlersMap

from appliance.auth.errors import ReauthRequiredError
from appliance.errors import OutpostError, ValidationError
from appliance.web.errors import outpost_error, wants_json
from appliance.web.guards import PENDING_OK, PendingStepError
from appliance.web.redirects import safe_next  # the one rule for `next` (no open redirect)
from appliance.web.render import render

MAX_FIELD = 4096  # longer form fields are refused before any work is done
PENDING = {PENDING_OK: True}  # handler opt: reachable while a password change or 2FA set-up is pending
RETURN_TO = "outpost_return_to"  # handler opt: the page holding this POST route's form (see on_page)
_INVALID = "Please correct the highlighted fields."


def redirect(location: str) -> Response:
    return Response(b"", status_code=303, headers={"Location": location})


def text(form, name: str) -> str:
    """A form field as bounded text (absent: ""); ValidationError naming the field otherwise."""
    value = form.get(name, "")
    if not isinstance(value, str):
        raise ValidationError(_INVALID, details={name: "Expected text."})
    if len(value) > MAX_FIELD:
        raise ValidationError(_INVALID, details={name: f"Far too long: at most {MAX_FIELD} characters."})
    return value


async def fields(request: Request, *, limit: int = MAX_FIELD) -> dict[str, str]:
    """Every text field of the submitted form (files are left out), each at most `limit` characters."""
    form = await request.form()
    out = {}
    for key in form:
        value = form.get(key)
        if isinstance(value, str):
            if len(value) > limit:
                raise ValidationError("A field is far too long.", details={key: "Far too long."})
            out[key] = value
    return out


def page(request: Request, template: str, *, status: int = 200, **context) -> Response:
    return render(request.app.state.templates, request, template, status=status, **context)


def on_page(form_page: str, **opt) -> dict:
    """Handler opt for a browser POST route: the page that holds its form ("/users/{user_id}":
    path parameters come from the request), plus any other opt (e.g. **PENDING)."""
    return {RETURN_TO: form_page, **opt}


def return_page(request: Request) -> str:
    """Where the browser goes back to after /reauth: the page itself for a GET, the page that
    holds the form for a POST (its route's `on_page`), the dashboard if the route names none."""
    if request.method == "GET":
        return request.url.path + ("?" + request.url.query if request.url.query else "")
    declared = request.route_handler.opt.get(RETURN_TO)
    if not isinstance(declared, str):
        return "/dashboard"
    return declared.format_map(request.path_params)


def step_redirect(request: Request, exc: OutpostError) -> Response:
    """Browsers: pending step -> its page; step-up needed -> /reauth?next=<the page>. Others: JSON error."""
    if wants_json(request) or request.headers.get("hx-request"):
        return outpost_error(request, exc)
    if isinstance(exc, PendingStepError):
        return redirect(exc.location)
    return redirect("/reauth?next=" + quote(safe_next(return_page(request), "/account"), safe=""))


EXCEPTION_HANDLERS: ExceptionHandlersMap = {PendingStepError: step_redirect, ReauthRequiredError: step_redirect}
