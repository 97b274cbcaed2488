"""The appliance's own HTTPS listener (`appliance.web.server.serve`) in a background thread,
for tests that serve an ASGI app in process over real TLS: the listener tests (tests/tls),
the frozen-clock appliance (tests/auth/clocked.py) and anything else that needs the served
stack without a subprocess."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from typing import Any

import uvloop

from appliance.web.server import ServerStartError, serve
from tests.conftest import free_port


async def tiny_app(scope, receive, send) -> None:
    """Minimal ASGI app: lifespan support, and an echo of the scheme on every request."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = f"ok {scope['scheme']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


class ServerThread:
    """`serve()` on its own uvloop in a background thread; `stop()` cancels it gracefully.

    Without an explicit `port` it takes a free one, and takes another if that one was grabbed
    before serve() bound it (free_port() is only a hint). `serve_kw` go to serve() (limits, allow...)."""

    def __init__(self, ssl_context: ssl.SSLContext, host: str = "127.0.0.1", port: int | None = None, app=tiny_app,
                 **serve_kw: Any) -> None:
        self.host = host
        self._fixed_port = port
        self.port = port or free_port(host)
        self._context = ssl_context
        self._app = app
        self._serve_kw = serve_kw
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._new_thread()

    def _new_thread(self) -> None:
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: uvloop.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        try:
            await serve(self._app, host=self.host, port=self.port, ssl_context=self._context,
                        on_started=self._started.set, **self._serve_kw)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # handed to the test thread
            self.error = exc
        finally:
            self._started.set()

    def start(self) -> ServerThread:
        for attempt in range(3):
            self._thread.start()
            self._started.wait(10)
            if self.error is None:
                return self
            taken = isinstance(self.error, ServerStartError) and "already in use" in str(self.error)
            if not taken or self._fixed_port is not None or attempt == 2:
                raise self.error
            self._thread.join(5)
            self.error, self.port = None, free_port(self.host)
            self._new_thread()
        raise AssertionError("unreachable")

    def call(self, fn: Callable[[], object]) -> object:
        """Run fn in the server's loop thread (where the app would run it) and return its result."""
        assert self.loop is not None

        async def call() -> object:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def stop(self) -> None:
        if self.loop is not None and self._task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(15)
        assert not self._thread.is_alive(), "server thread did not stop"
