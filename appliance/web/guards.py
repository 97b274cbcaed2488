"""Route guards: every route declares who may reach it (ACL-1), deny by default.

Each handler carries exactly one *access guard* (`public`, `authenticated`,
`permission(...)`). The app-level `deny_undeclared` guard refuses any handler
without one, and test_every_route_declares_exactly_one_access_guard (tests/web/)
fails the build on such a route.
`csrf_protect` (app level) checks every state-changing browser request (ACL-4).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.auth.permissions import allowed
from appliance.crypto import tokens
from appliance.errors import OutpostError, PermissionDeniedError
from appliance.principal import Kind, Principal
from appliance.web.security import CLIENT, PRE_SESSION_COOKIE, PRINCIPAL

ACCESS_ATTR = "__outpost_access__"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class NotAuthenticatedError(OutpostError):
    code = "not_authenticated"
    status = 401

    def __init__(self) -> None:
        super().__init__("Please sign in.")


class CSRFError(OutpostError):
    code = "csrf_failed"
    status = 403

    def __init__(self, reason: str) -> None:
        super().__init__("This form has expired or came from another site. Reload the page and try again.",
                         details={"reason": reason})
        self.reason = reason


def _access(kind: str):
    def mark(fn):
        setattr(fn, ACCESS_ATTR, kind)
        return fn
    return mark


def principal_of(connection: ASGIConnection) -> Principal | None:
    who = connection.scope.get(PRINCIPAL)
    return who if isinstance(who, Principal) else None


@_access("public")
async def public(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Anyone may reach this route (login, setup, health check, static assets)."""


PENDING_OK = "outpost_pending_ok"  # handler opt: reachable while a password change or 2FA set-up is pending


class PendingStepError(OutpostError):
    """The signed-in user must change the password or set up 2FA before anything else (AUTH-5, AUTH-6).

    Browsers are redirected to `location` (handler in ui/account.py)."""

    code = "account_step_required"
    status = 403

    def __init__(self, step: str) -> None:
        self.location = "/account/password" if step == "password" else "/account/2fa"
        super().__init__("Change your temporary password first." if step == "password"
                         else "Set up two-factor sign-in first.", details={"step": step})


def _ensure_no_pending_step(principal: Principal, handler: BaseRouteHandler) -> None:
    step = principal.pending_step
    if step and not handler.opt.get(PENDING_OK):
        raise PendingStepError(step)


@_access("authenticated")
async def authenticated(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Any signed-in user (who has no forced password change or 2FA set-up pending,
    unless the handler is marked `opt={PENDING_OK: True}`)."""
    principal = principal_of(connection)
    if principal is None:
        raise NotAuthenticatedError()
    _ensure_no_pending_step(principal, handler)


async def _refuse(connection: ASGIConnection, exc: OutpostError, event: Event, reason: str) -> None:
    """Audit a refused request, then raise. Nothing changed, so the record stands alone."""
    services = connection.app.state.services
    principal = principal_of(connection)
    source = str(connection.scope.get(CLIENT) or "unknown")
    actor = principal.actor(source) if principal else Actor(type="anonymous", name="", source=source)
    await services.audit.record_refusal(event, actor=actor, target=connection.scope["path"][:200],
                                        details={"method": connection.scope.get("method", ""), "reason": reason})
    raise exc


def permission(name: str):
    """Signed-in users whose role holds `name` (auth/permissions.py)."""

    @_access(f"permission:{name}")
    async def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        if principal is None:
            raise NotAuthenticatedError()
        _ensure_no_pending_step(principal, handler)
        if not allowed(principal.role, name):
            await _refuse(connection,
                          PermissionDeniedError("Your role does not allow this.", details={"permission": name}),
                          Event.ACCESS_DENIED, f"role {principal.role} lacks {name}")

    guard.__name__ = f"permission_{name.replace('.', '_')}"
    return guard


async def writing_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Extra guard (not an access rule) on API routes that change keys or sessions: an API
    key whose role lacks `apikeys.write` (viewer, auditor keys) is refused, audited."""
    principal = principal_of(connection)
    if principal is not None and principal.kind is Kind.API_KEY and not allowed(principal.role, "apikeys.write"):
        await _refuse(connection, PermissionDeniedError("A read-only API key cannot change API keys or sessions.",
                                                        details={"permission": "apikeys.write"}),
                      Event.ACCESS_DENIED, f"{principal.role} key lacks apikeys.write")


def access_kinds(handler: BaseRouteHandler) -> list[str]:
    # Guards are async on purpose: Litestar runs sync guards in a thread (~330 µs each).
    found = (getattr(g, "func", g) for g in handler.resolve_guards())
    return [getattr(g, ACCESS_ATTR) for g in found if hasattr(g, ACCESS_ATTR)]


async def deny_undeclared(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """App-level: a route without exactly one access guard is refused (deny by default)."""
    if len(access_kinds(handler)) != 1:
        await _refuse(connection, PermissionDeniedError("This route has no access rule and is closed."),
                      Event.ACCESS_DENIED, "route without access rule")


def same_origin(connection: ASGIConnection) -> str | None:
    """Why a state-changing request is not same-origin, or None if it is (Fetch Metadata + Origin)."""
    site = connection.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return "cross-site request"
    origin = connection.headers.get("origin")
    if origin == "null" and site == "same-origin":
        # Browsers send "Origin: null" on form posts from pages with Referrer-Policy:
        # no-referrer (Fetch standard); Sec-Fetch-Site, which pages cannot forge, vouches.
        origin = None
    if origin is None:
        return None if site in ("same-origin", "none") else "missing Origin header"
    parts = urlsplit(origin)
    if parts.scheme != "https" or parts.netloc.lower() != connection.headers.get("host", "").lower():
        return "foreign Origin"
    return None


async def csrf_protect(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """App-level: unsafe browser requests need a same origin and the right CSRF token.

    Signed-in: the session's token; before sign-in (login, setup): the pre-session
    cookie's token (double submit). The token comes from the X-CSRF-Token header
    (htmx) or the `_csrf` form field."""
    if connection.scope.get("method") not in UNSAFE or connection.scope["path"].startswith("/api/"):
        return
    if reason := same_origin(connection):
        await _refuse(connection, CSRFError(reason), Event.ACCESS_CSRF_DENIED, reason)
    sent = connection.headers.get("x-csrf-token")
    if sent is None:
        try:
            # Litestar hands HTTP guards the handler's own Request: its parsed form is cached for it.
            form = await connection.form() if isinstance(connection, Request) else {}
        except Exception:
            form = {}  # unreadable body: treated as carrying no token
        sent = form.get("_csrf")
    principal = principal_of(connection)
    expected = principal.csrf_token if principal else connection.cookies.get(PRE_SESSION_COOKIE)
    if not sent or not expected or not isinstance(sent, str) or not tokens.equal(sent, expected):
        await _refuse(connection, CSRFError("missing or wrong token"), Event.ACCESS_CSRF_DENIED,
                      "missing or wrong token")


async def app_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """The one app-level guard: deny undeclared routes, then check CSRF.

    One guard, not two: each guard Litestar runs costs a call per request, so app-level
    checks are folded together (web/guardrunner.py removes the handler copy per guard)."""
    await deny_undeclared(connection, handler)
    await csrf_protect(connection, handler)

