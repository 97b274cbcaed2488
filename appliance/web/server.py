"""The HTTPS listener: uvicorn run programmatically on a socket we bind ourselves.

Invariants:
- We bind and listen first, so "address already in use" and "permission denied" become
  a `ServerStartError` naming the port and address, before any work is done.
- The fast path is asserted, not hoped for: uvloop as the running loop (checked here) and
  httptools as the HTTP parser (checked by web/protocol.py, which holds the protocol classes).
- The SSLContext is the caller's (`TLSManager.ssl_context()`), never one uvicorn builds
  from files: certificate renewals then reach new connections without a restart.
- No `Server` header, no proxy headers (the web layer decides whom to trust), no access log.
- The front door (web/connlimits.py) accepts every socket itself: the IP allow list and the
  connection caps act before anything is read, then `loop.connect_accepted_socket` runs the
  TLS handshake under a deadline, then web/protocol.py's guarded HTTP protocol (uvicorn's
  httptools protocol plus a header deadline and a request-head budget) takes over. uvicorn's own listener and TLS are
  not used: they have no handshake deadline and learn the peer only after the handshake.
- Overriding uvicorn internals is explicit and version-checked: `serve()` first calls
  `protocol.check_framework()`, which refuses a uvicorn other than the one the overrides
  (the protocols there and `_Server` here) were written against, or one lacking a method
  they override.
- SIGTERM/SIGINT (main thread) and cancellation both shut down gracefully: stop accepting,
  let requests in flight finish (up to `GRACEFUL_SECONDS`), run lifespan shutdown, and
  return normally (cancellation re-raises CancelledError afterwards) so the caller's own
  cleanup runs. uvicorn's own handlers would re-raise the signal after shutdown, and the
  default SIGTERM action would kill the process before that cleanup. While it runs,
  serve() owns the loop's SIGTERM/SIGINT handlers and removes them when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from appliance.config import WebConfig
from appliance.web.connlimits import Gate, Limits, Listener, Slot, connection_cap
from appliance.web.protocol import ServerStartError, check_framework

__all__ = ["BACKLOG", "GRACEFUL_SECONDS", "ServerStartError", "bind_socket", "check_framework", "serve"]

log = logging.getLogger("outpost.web")
GRACEFUL_SECONDS = 10
BACKLOG = 2048


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port (IPv4, or IPv6 such as "::"); raise ServerStartError.

    Public so the CLI can take a privileged port before dropping privileges. "::" means
    IPv6 only (IPV6_V6ONLY set whatever the sysctl says), as the config documents, so
    client addresses are never IPv4-mapped and the IP allow list sees plain IPv4 or IPv6.
    """
    where = f"port {port} on {host}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerStartError(f"cannot listen on {where}: {host!r} is not a usable address ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restart rebind while old connections sit in TIME_WAIT. On Linux it does
        # not let two live listeners share the port (that is SO_REUSEPORT, not set).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        # listen() now: a bound but not listening socket does not hold the port against
        # another SO_REUSEADDR socket, so a second instance would not fail here.
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ServerStartError(_bind_message(exc, where, port)) from None
    sock.set_inheritable(False)
    return sock


def _bind_message(exc: OSError, where: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"{where} is already in use (another Outpost or another program is listening there)"
    if exc.errno == errno.EACCES:
        hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" if port < 1024 else ""
        return f"permission denied to listen on {where}{hint}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: the address is not assigned to this machine"
    return f"cannot listen on {where}: {exc.strerror}"


class _Server(uvicorn.Server):
    """uvicorn.Server that reports start-up, leaves signal handling to `serve()` and closes the
    front door (no new connections, handshakes in progress dropped) before a graceful stop."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None, gate: Gate,
                 ssl_context: ssl.SSLContext) -> None:
        super().__init__(config)
        self._on_started = on_started
        self.gate = gate
        self.ssl_context = ssl_context
        self.cancelled = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's startup for given sockets, with our Listener in place of loop.create_server.
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config, state, app_state = self.config, self.server_state, self.lifespan.state
        limits = self.gate.limits

        def make_http(slot: Slot) -> asyncio.Protocol:
            protocol = config.http_protocol_class(config=config, server_state=state, app_state=app_state)  # type: ignore[call-arg]
            return protocol.guard(slot, limits)  # type: ignore[attr-defined]

        # uvicorn types `servers` as asyncio Servers; it only calls close()/wait_closed() on them, which Listener has
        self.servers = [Listener(sock, self.gate, self.ssl_context, make_http).start()  # type: ignore[misc]
                        for sock in sockets or []]
        self.started = True
        if self._on_started is not None:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        # Cancelling serve() takes the same graceful path as SIGTERM: uvicorn's _serve()
        # goes on to shutdown() once main_loop() returns; serve() re-raises afterwards.
        try:
            await super().main_loop()
        except asyncio.CancelledError:
            self.cancelled = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gate.close()
        await super().shutdown(sockets=sockets)

    def request_exit(self) -> None:
        # A second request forces exit, as uvicorn does for a second Ctrl+C.
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def _uvloop() -> asyncio.AbstractEventLoop:
    """The running loop, which must be uvloop's; ServerStartError otherwise."""
    import uvloop

    loop = asyncio.get_running_loop()
    if not isinstance(loop, uvloop.Loop):
        raise ServerStartError("serve() must run on a uvloop event loop (use uvloop.run); "
                               "refusing the slower asyncio loop")
    return loop


def _front_door(limits: Limits, allow: Callable[[str], bool] | None, trusted_proxies: Sequence[str]) -> Gate:
    cap = connection_cap(limits)
    if cap is None:
        raise ServerStartError("the open-file limit leaves no room for connections; raise it "
                               "(systemd: LimitNOFILE=) to at least 1024")
    return Gate(limits, cap=cap, allow=allow, trusted_proxies=list(trusted_proxies))


def _uvicorn_config(asgi_app: Any, host: str, port: int, http_class: type, ws_class: type) -> uvicorn.Config:
    config = uvicorn.Config(
        asgi_app,
        host=host,
        port=port,
        server_header=False,
        proxy_headers=False,
        access_log=False,
        log_config=None,
        lifespan="on",
        http=http_class,
        # uvicorn 0.54 deprecates "websockets" (websockets.legacy); sans-I/O is its successor.
        ws=ws_class,
        # Only used by uvicorn.run(); here the loop is the caller's, checked by _uvloop().
        loop="uvloop",
        backlog=BACKLOG,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    config.load()  # config.ssl stays None: the front door starts TLS itself, with a handshake deadline
    return config


async def serve(
    asgi_app: Any,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    on_started: Callable[[], None] | None = None,
    limits: Limits | None = None,
    allow: Callable[[str], bool] | None = None,
    trusted_proxies: Sequence[str] = (),
) -> None:
    """Serve `asgi_app` over HTTPS on host:port until SIGTERM/SIGINT or cancellation.

    Must run on a uvloop event loop (e.g. `uvloop.run(main())`). `on_started` is called
    once the socket accepts connections and lifespan startup succeeded. `limits`: the [web]
    connection and request-head limits (default: the [web] defaults). `allow(address)`: the
    IP allow list, applied when a connection is accepted (None: everyone); `trusted_proxies`
    are admitted regardless and judged per request by the web layer. Raises ServerStartError
    for a port in use, a missing fast path, an unexpected uvicorn, an open-file limit too low
    for any connection, or a failed app startup.
    """
    http_class, ws_class = check_framework()
    loop = _uvloop()
    gate = _front_door(limits or Limits.from_config(WebConfig()), allow, trusted_proxies)
    sock = bind_socket(host, port)
    signals: list[signal.Signals] = []
    try:
        server = _Server(_uvicorn_config(asgi_app, host, port, http_class, ws_class), on_started, gate, ssl_context)
        # add_signal_handler works only in the main thread; elsewhere the caller cancels us.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, server.request_exit)
                signals.append(sig)
        await server.serve(sockets=[sock])
    except SystemExit:
        # uvicorn calls sys.exit() when the app or its lifespan startup fails.
        raise ServerStartError("the web application failed to start (lifespan startup failed); see the log") from None
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        sock.close()
    if server.cancelled:
        raise asyncio.CancelledError

