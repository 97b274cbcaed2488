"""What a handler needs about its request, one way each (issue 12, point 4).

Browser (ui/) and API (api/) handlers both take these from here instead of reaching into
`request.app.state` or the ASGI scope themselves:

- `services(request)`: the services `app.build(config)` constructed (the composition root);
- `principal(request)`: who is asking, as resolved by the security layer (session cookie) or
  the API gate (bearer key). Every handler sits behind an access guard, and all but `public`
  ones guarantee a principal, so this raises NotAuthenticatedError rather than return None;
  `public` handlers that care use `principal_or_none`;
- `client(request)`: the client address the security layer settled on (trusted proxies applied);
- `actor(request)`: the principal as the audit log names it, with that address as the source;
- `user_agent(request)`: the browser's User-Agent (the auth service bounds what it keeps);
- `switch_principal(request, who)`: a request that rotated its session answers as the new one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.connection import ASGIConnection

from appliance.audit.models import Actor
from appliance.principal import Principal
from appliance.web.guards import NotAuthenticatedError
from appliance.web.security import CLIENT, PRINCIPAL

if TYPE_CHECKING:  # type only: app.build() constructs what the web layer serves, never the other way round
    from appliance.app import Services


def services(request: ASGIConnection) -> Services:
    return request.app.state.services


def principal_or_none(request: ASGIConnection) -> Principal | None:
    return request.scope.get(PRINCIPAL)  # type: ignore[return-value]


def switch_principal(request: ASGIConnection, who: Principal) -> None:
    """Answer the rest of this request as `who`: the session it just rotated to (its CSRF token)."""
    request.scope[PRINCIPAL] = who  # type: ignore[literal-required]


def principal(request: ASGIConnection) -> Principal:
    """The signed-in user or API key; NotAuthenticatedError if the guards let none through."""
    who = principal_or_none(request)
    if who is None:
        raise NotAuthenticatedError()
    return who


def client(request: ASGIConnection) -> str:
    return request.scope.get(CLIENT) or "unknown"  # type: ignore[return-value]


def actor(request: ASGIConnection) -> Actor:
    """The audit actor: an API key acts for its owner (actor_type api_key), a session for its user."""
    return principal(request).actor(client(request))


def user_agent(request: ASGIConnection) -> str:
    return request.headers.get("user-agent", "")
