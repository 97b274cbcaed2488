"""The one patch of Litestar: route guards get the route handler itself, not a copy.

Litestar's `BaseRouteHandler.authorize_connection` passes each guard `copy(handler)`
(~20 µs per guard per request, measured by bench/web.py: most of the security layers'
cost). Our guards (web/guards.py) only read the handler, never change it, so the copy
buys nothing.

Replacing a framework method is done explicitly, by `install()`, called from
`create_app` (web/__init__.py); importing this module changes nothing. `install()`
refuses, with FrameworkMismatchError, a Litestar other than the version the replacement
was reviewed against, or one whose `authorize_connection` is no longer the plain loop it
replaces (a new Litestar could do more there, e.g. run other checks, which the
replacement would silently skip). tests/web/test_guardrunner.py covers both refusals and
that guards still run, and refuse, once it is installed.
"""

from __future__ import annotations

import litestar
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

SUPPORTED_LITESTAR = (2, 25)  # major, minor of the Litestar whose authorize_connection was reviewed
# Names the reviewed method uses: `for guard in self.resolve_guards(): await guard(connection, copy(self))`.
_REVIEWED_NAMES = ("resolve_guards", "copy")
_REVIEWED_ARGS = ("self", "connection", "guard")


class FrameworkMismatchError(RuntimeError):
    """The installed Litestar is not the one the guard runner was written against."""


async def _authorize_without_copy(self: BaseRouteHandler, connection: ASGIConnection) -> None:
    """Run the handler's guards, handing them the handler itself (see the module docstring)."""
    for guard in self.resolve_guards():
        await guard(connection, self)  # type: ignore[misc]  # resolve_guards wraps each guard as async


def installed() -> bool:
    return BaseRouteHandler.authorize_connection is _authorize_without_copy


def check_framework() -> None:
    """FrameworkMismatchError unless Litestar is the reviewed version with the reviewed method."""
    info = litestar.__version__
    found = (getattr(info, "major", None), getattr(info, "minor", None))
    version = ".".join(str(getattr(info, part, "?")) for part in ("major", "minor", "patch"))
    if found != SUPPORTED_LITESTAR:
        raise FrameworkMismatchError(
            f"Litestar {version} is not the version the guard runner was written against "
            f"({SUPPORTED_LITESTAR[0]}.{SUPPORTED_LITESTAR[1]}.x); review web/guardrunner.py before upgrading")
    code = getattr(BaseRouteHandler.authorize_connection, "__code__", None)
    if code is None or code.co_names != _REVIEWED_NAMES or code.co_varnames != _REVIEWED_ARGS:
        raise FrameworkMismatchError(
            f"Litestar {version}: BaseRouteHandler.authorize_connection is not the method the guard runner "
            "replaces; review web/guardrunner.py")


def install() -> None:
    """Replace Litestar's guard runner (once per process; later calls do nothing)."""
    if installed():
        return
    check_framework()
    BaseRouteHandler.authorize_connection = _authorize_without_copy  # type: ignore[method-assign]
