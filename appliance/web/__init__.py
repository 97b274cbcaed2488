"""The web shell: the only package that imports Litestar (and Jinja).

`create_app(services)` wires routes, guards, middleware and error handlers around
services built by `appliance.app.build`. Browser routes live in `ui/`, machine
routes in `api/`; both are thin over the capability services.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.static_files import create_static_files_router

from appliance.web import errors, guardrunner, guards, jsonlimits
from appliance.web.api import apikeys as api_apikeys
from appliance.web.api import audit as api_audit
from appliance.web.api import devices as api_devices
from appliance.web.api import health as api_health
from appliance.web.api import metrics as api_metrics
from appliance.web.api import openapi as api_openapi
from appliance.web.api import settings as api_settings
from appliance.web.api import users as api_users
from appliance.web.apiauth import ApiGate
from appliance.web.render import make_environment
from appliance.web.security import SecurityMiddleware
from appliance.web.ui import account as ui_account
from appliance.web.ui import allowlist as ui_allowlist
from appliance.web.ui import apikeys as ui_apikeys
from appliance.web.ui import audit as ui_audit
from appliance.web.ui import backups as ui_backups
from appliance.web.ui import certificates as ui_certificates
from appliance.web.ui import dashboard as ui_dashboard
from appliance.web.ui import devices as ui_devices
from appliance.web.ui import forms as ui_forms
from appliance.web.ui import probe as ui_probe
from appliance.web.ui import reports as ui_reports
from appliance.web.ui import session as ui_session
from appliance.web.ui import settings as ui_settings
from appliance.web.ui import updates as ui_updates
from appliance.web.ui import users as ui_users

if TYPE_CHECKING:  # type only: app.build() constructs what the web layer serves, never the other way round
    from appliance.app import Services


# REST API (API-1): these handlers are also what /api/v1/openapi.json describes.
API_ROUTES = [*api_apikeys.ROUTES, *api_audit.ROUTES, *api_health.ROUTES, *api_users.ROUTES, *api_settings.ROUTES,
              *api_devices.ROUTES]

# Browser pages (session cookie, CSRF, strict CSP).
UI_ROUTES = [*ui_session.ROUTES, *ui_account.ROUTES, *ui_users.ROUTES, *ui_settings.ROUTES, *ui_dashboard.ROUTES,
             *ui_audit.ROUTES, *ui_apikeys.ROUTES, *ui_allowlist.ROUTES, *ui_reports.ROUTES, *ui_devices.ROUTES,
             *ui_updates.ROUTES, *ui_certificates.ROUTES, *ui_backups.ROUTES, *ui_probe.ROUTES]


def create_app(services: Services) -> Litestar:
    guardrunner.install()  # the one patch of Litestar: explicit and version-checked (web/guardrunner.py)
    config = services.config.web
    static_dir = resources.files("appliance.web").joinpath("static")
    static = create_static_files_router(path="/static", directories=[str(static_dir)], guards=[guards.public],
                                        name="static")
    app = Litestar(
        route_handlers=[*UI_ROUTES, *API_ROUTES, *api_openapi.ROUTES, *api_metrics.ROUTES, static],
        guards=[guards.app_guard],
        exception_handlers={**errors.HANDLERS, **ui_forms.EXCEPTION_HANDLERS},  # pending step, /reauth
        before_request=jsonlimits.refuse_deep_json,  # no handler sets its own: this one always runs
        request_max_body_size=config.max_body_bytes,
        openapi_config=None,
        debug=False,
        logging_config=None,
    )
    app.state.services = services
    app.state.api_routes = API_ROUTES
    app.state.templates = make_environment()
    return app


def create_asgi(services: Services) -> SecurityMiddleware:
    """The served application: the security layer wraps the whole Litestar app, so it
    also covers responses Litestar produces before routing (404, 405)."""
    config = services.config.web
    return SecurityMiddleware(create_app(services), allowed_hosts=services.allowed_hosts,
                              max_body=config.max_body_bytes, trusted_proxies=list(config.trusted_proxies),
                              resolve=services.auth.sessions.resolve, allow=services.allowlist.allows,
                              api_gate=ApiGate(services))
