"""The web shell: the only package that imports Litestar (and Jinja).

`create_app(services)` wires routes, guards, middleware and error handlers around
services built by `appliance.app.build`. Browser routes live in `ui/`, machine
routes in `api/`; both are thin over the capability services.
"""

from __future__ import annotations

from importlib import resources

from litestar import Litestar
from litestar.static_files import create_static_files_router

from appliance.web import errors, guards
from appliance.web.api import health as api_health
from appliance.web.render import make_environment
from appliance.web.security import SecurityMiddleware
from appliance.web.ui import audit as ui_audit
from appliance.web.ui import dashboard as ui_dashboard
from appliance.web.ui import session as ui_session


def create_app(services) -> Litestar:
    config = services.config.web
    static_dir = resources.files("appliance.web").joinpath("static")
    static = create_static_files_router(path="/static", directories=[str(static_dir)], guards=[guards.public],
                                        name="static")
    app = Litestar(
        route_handlers=[*ui_session.ROUTES, *ui_dashboard.ROUTES, *ui_audit.ROUTES, *api_health.ROUTES, static],
        guards=[guards.deny_undeclared, guards.csrf_protect],
        exception_handlers=errors.HANDLERS,
        request_max_body_size=config.max_body_bytes,
        openapi_config=None,
        debug=False,
        logging_config=None,
    )
    app.state.services = services
    app.state.templates = make_environment()
    return app


def create_asgi(services) -> SecurityMiddleware:
    """The served application: the security layer wraps the whole Litestar app, so it
    also covers responses Litestar produces before routing (404, 405)."""
    config = services.config.web
    return SecurityMiddleware(create_app(services), allowed_hosts=services.allowed_hosts,
                              max_body=config.max_body_bytes, trusted_proxies=list(config.trusted_proxies),
                              resolve=services.auth.resolve)
