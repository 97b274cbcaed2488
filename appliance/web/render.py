"""Jinja rendering for the browser UI. Templates are package data (freeze-friendly)."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import Request, Response

from appliance import __version__
from appliance.clock import iso
from appliance.tls import EXPIRY_WARNING_DAYS
from appliance.web.deps import client, principal_or_none
from appliance.web.security import PRE_SESSION_COOKIE

NAV = [  # (permission or None for any signed-in user, path, label)
    ("dashboard.view", "/dashboard", "Dashboard"),
    ("devices.view", "/devices", "Devices"),
    ("probe.view", "/probe", "Fleet"),
    ("probe.view", "/alerts", "Alerts"),
    ("audit.read", "/audit", "Audit log"),
    ("users.manage", "/users", "Users"),
    ("settings.security", "/settings/security", "Security policy"),
    ("settings.allowlist", "/settings/allowlist", "IP allow list"),
    ("audit.report", "/audit/logins", "Login report"),
    ("apikeys.manage", "/api-keys", "API keys"),
    ("updates.manage", "/updates", "Updates"),
    ("settings.tls", "/settings/certificates", "Certificates"),
    ("backups.manage", "/settings/backups", "Backups"),
    (None, "/account", "My account"),
    ("about.view", "/about", "About"),
]


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def make_environment() -> Environment:
    env = Environment(loader=PackageLoader("appliance.web", "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["iso"] = iso
    env.filters["bytes"] = _bytes
    env.globals["version"] = __version__
    env.globals["cert_warning_days"] = EXPIRY_WARNING_DAYS  # the dashboard's certificate tile
    return env


def render(env: Environment, request: Request, template: str, *, status: int = 200, **context) -> Response:
    """Render a page with the principal, its CSRF token and the navigation it may see."""
    from appliance.auth.permissions import allowed

    principal = principal_or_none(request)
    pre_csrf = request.scope.get("outpost.pre_csrf") or request.cookies.get(PRE_SESSION_COOKIE, "")
    csrf = principal.csrf_token if principal else pre_csrf
    nav = [(path, label) for perm, path, label in NAV
           if principal and (perm is None or allowed(principal.role, perm))]
    html = env.get_template(template).render(principal=principal, csrf_token=csrf, nav=nav, path=request.url.path,
                                             client=client(request), **context)
    return Response(content=html, status_code=status, media_type="text/html")
