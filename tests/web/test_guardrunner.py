"""web/guardrunner.py: the one patch of Litestar is explicit, version-checked and made by
create_app; importing the web package patches nothing (issue 12, point 7)."""

import subprocess
import sys
import textwrap
from copy import copy
from pathlib import Path

import litestar
import pytest
from litestar import get
from litestar.exceptions import PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.testing import create_test_client
from litestar.utils.version import Version

from appliance.web import guardrunner
from tests.conftest import FAST_HASH_CONFIG

ROOT = Path(__file__).resolve().parents[2]


async def _reviewed_shape(self, connection):
    """The method as Litestar 2.25 writes it (the shape guardrunner checks for)."""
    for guard in self.resolve_guards():
        await guard(connection, copy(self))


def test_importing_the_web_package_patches_nothing_and_create_app_installs_the_runner(tmp_path):
    """A clean interpreter: after importing every web module Litestar's method is its own;
    after create_app it is the guard runner."""
    script = textwrap.dedent("""
        import sys, tomllib
        from litestar.handlers import BaseRouteHandler
        import appliance.web, appliance.web.guards, appliance.web.guardrunner as runner
        from appliance import app, config
        assert BaseRouteHandler.authorize_connection.__module__ == "litestar.handlers.base", "patched at import"
        cfg = config.with_data_dir(config.parse(tomllib.loads(sys.stdin.read())), sys.argv[1])
        services = app.build(cfg)
        try:
            appliance.web.create_app(services)
        finally:
            services.close()
        assert runner.installed(), "create_app did not install the guard runner"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "data")], input=FAST_HASH_CONFIG,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_guards_get_the_handler_itself_and_still_refuse():
    guardrunner.install()
    seen = []

    async def record(connection, handler) -> None:
        seen.append(handler)

    async def refuse(connection, handler) -> None:
        raise PermissionDeniedException("refused by the guard")

    @get("/open", guards=[record], sync_to_thread=False)
    def open_route() -> str:
        return "ok"

    @get("/closed", guards=[record, refuse], sync_to_thread=False)
    def closed_route() -> str:
        return "never"

    with create_test_client([open_route, closed_route]) as client:
        assert client.get("/open").text == "ok"
        assert client.get("/open").text == "ok"
        closed = client.get("/closed")
        assert closed.status_code == 403 and "never" not in closed.text
    assert len(seen) == 3, "every guard ran"
    assert seen[0] is seen[1], "the guard got the handler itself, not a fresh copy per request"


def test_an_unknown_litestar_version_is_refused_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(BaseRouteHandler, "authorize_connection", _reviewed_shape)
    monkeypatch.setattr(litestar, "__version__", Version(3, 0, 0, "final", 0))
    with pytest.raises(guardrunner.FrameworkMismatchError, match=r"Litestar 3\.0\.0.*2\.25\.x"):
        guardrunner.install()
    assert BaseRouteHandler.authorize_connection is _reviewed_shape, "nothing was replaced"


def test_a_changed_authorize_connection_is_refused(monkeypatch):
    async def grown(self, connection):  # what a new Litestar might do: more than run the guards
        connection.scope["checked"] = True
        for guard in self.resolve_guards():
            await guard(connection, copy(self))

    monkeypatch.setattr(BaseRouteHandler, "authorize_connection", grown)
    with pytest.raises(guardrunner.FrameworkMismatchError, match="not the method the guard runner replaces"):
        guardrunner.install()
    assert BaseRouteHandler.authorize_connection is grown
    monkeypatch.setattr(BaseRouteHandler, "authorize_connection", _reviewed_shape)
    guardrunner.install()  # the reviewed shape on the reviewed version is accepted
    assert guardrunner.installed()
