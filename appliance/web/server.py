"""The HTTPS listener: uvicorn run programmatically on a socket we bind ourselves.

Invariants:
- We bind and listen first, so "address already in use" and "permission denied" become
  a `ServerStartError` naming the port and address, before any work is done.
- The fast path is asserted, not hoped for: uvloop as the running loop and httptools as
  the HTTP parser (uvicorn would otherwise fall back to asyncio + h11, ~45 % slower).
  Protocol classes are imported here by name, not by uvicorn from strings, which also
  keeps the frozen build honest.
- The SSLContext is the caller's (`TLSManager.ssl_context()`), never one uvicorn builds
  from files: certificate renewals then reach new connections without a restart.
- No `Server` header, no proxy headers (the web layer decides whom to trust), no access log.
- The front door (web/connlimits.py) accepts every socket itself: the IP allow list and the
  connection caps act before anything is read, then `loop.connect_accepted_socket` runs the
  TLS handshake under a deadline, then `_GuardedHttp` (uvicorn's httptools protocol plus a
  header deadline and a request-head budget) takes over. uvicorn's own listener and TLS are
  not used: they have no handshake deadline and learn the peer only after the handshake.
- Overriding uvicorn internals is explicit and version-checked: `check_framework()` refuses
  to start on a uvicorn other than SUPPORTED_UVICORN or one lacking a method we override.
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
import functools
import logging
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from appliance.config import WebConfig
from appliance.errors import OutpostError
from appliance.web.connlimits import Gate, HeadBudget, HeadRefused, Limits, Listener, Slot, connection_cap
from appliance.web.security import raw_refusal

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpBase
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol as _WsBase
else:  # the real bases are mixed in by _protocols(), after _fast_path() has checked they exist
    _HttpBase = _WsBase = object

log = logging.getLogger("outpost.web")
GRACEFUL_SECONDS = 10
BACKLOG = 2048
SUPPORTED_UVICORN = "0.54."  # the version whose protocol internals _GuardedHttp was written against


class ServerStartError(OutpostError):
    """The HTTPS listener could not start; the message says why in plain words."""

    code = "server_start_failed"
    status = 500


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


def _fast_path() -> tuple[type, type]:
    """Import the protocol classes we insist on; raise ServerStartError if one is missing."""
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError as exc:
        raise ServerStartError(
            f"the HTTPS server's fast path is missing ({exc.name}); refusing to fall back to a slower stack"
        ) from None
    return HttpToolsProtocol, WebSocketsSansIOProtocol


class _GuardedHttp(_HttpBase):
    """uvicorn's HttpToolsProtocol plus the front door's request rules (issue 11, findings 1, 2, 13):

    - a request head must be complete within `header_timeout` of the handshake or of the
      previous response, or the connection is closed (slow or trickled heads);
    - the head is counted as it arrives (HeadBudget): too big a head, too many fields or too
      long a target gets 431/414 at once, so an unfinished head is never buffered past the limit;
    - every refusal written below the application (these and malformed requests) carries the
      full security header set and closes the connection;
    - the connection's Slot is released when the socket goes (or handed to the WebSocket).
    Every uvicorn method overridden or called here is listed in _RELIED_ON and checked at start.
    """

    _ParserError: type[Exception]
    _ParserUpgrade: type[Exception]

    def guard(self, slot: Slot, limits: Limits) -> _GuardedHttp:
        self.slot: Slot | None = slot
        self.budget = HeadBudget(limits)
        self.header_timeout = limits.header_timeout
        self.awaiting_head = True
        self.heads = 0  # completed heads; tells data_received that a new message began mid-read
        self.refusing = False
        self.head_timer: asyncio.TimerHandle | None = None
        return self

    # -- connection ---------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        try:
            super().connection_lost(exc)
        finally:
            if self.slot is not None:
                self.slot.release()

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        ws = self.transport.get_protocol()
        if isinstance(ws, _GuardedWebSocket):  # the socket, and so its slot, now belongs to the WebSocket
            ws.slot, self.slot = self.slot, None

    # -- reading ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with our refusals instead of its bare-text 400.
        if self.refusing:
            return
        self._unset_keepalive_if_required()
        heads, in_head = self.heads, self.awaiting_head
        try:
            self.parser.feed_data(data)
        except self._ParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except self._ParserError as exc:
            cause = exc.__context__
            self._refuse(cause if isinstance(cause, HeadRefused) else
                         HeadRefused(400, "bad_request", "The request is not valid HTTP/1.1."))
            return
        if self.awaiting_head:
            if heads != self.heads or not in_head:
                # a head, or a body, ended inside this read: count the next head from the next read
                # (a body's last read counted as head bytes dropped a request whose body ended in a big read)
                self.budget.received = 0
                return
            try:
                self.budget.bytes_read(len(data))
            except HeadRefused as refusal:
                self._refuse(refusal)

    def send_400_response(self, msg: str) -> None:
        self._refuse(HeadRefused(400, "bad_request", "The request is not valid HTTP/1.1."))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.budget.reset()
        self.awaiting_head = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self.budget.target(len(self.url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.budget.field(len(self.url), len(name), len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.awaiting_head = False
        self.heads += 1
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.awaiting_head = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's head is due within header_timeout, unless a pipelined one started.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm_head_timer()

    # -- refusals and deadlines ---------------------------------------------------------------
    def _refuse(self, refusal: HeadRefused) -> None:
        self.refusing = True
        self._cancel_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.abort()  # a response is being written: an error cannot be slotted in
            return
        self.transport.write(raw_refusal(refusal.status, refusal.code, refusal.message,
                                         self.server_state.default_headers))
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self.head_timer = self.loop.call_later(self.header_timeout, self._head_deadline_passed)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_deadline_passed(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()


class _GuardedWebSocket(_WsBase):
    """uvicorn's sans-I/O WebSocket protocol, releasing the connection's Slot when the socket goes."""

    slot: Slot | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if self.slot is not None:
                self.slot.release()


# What _GuardedHttp overrides or calls on uvicorn's classes; a uvicorn without one is refused.
_RELIED_ON = {
    "HttpToolsProtocol": ("connection_made", "connection_lost", "handle_websocket_upgrade", "data_received",
                          "send_400_response", "on_message_begin", "on_url", "on_header", "on_headers_complete",
                          "on_message_complete", "on_response_complete", "shutdown", "_unset_keepalive_if_required",
                          "_should_upgrade", "_unsupported_upgrade_warning"),
    "WebSocketsSansIOProtocol": ("connection_made", "connection_lost", "shutdown"),
    "Server": ("startup", "main_loop", "shutdown", "serve"),
}


def check_framework() -> tuple[type, type]:
    """The guarded protocol classes, after checking uvicorn is the version they were written for
    and has every method they override or call; ServerStartError otherwise."""
    http_base, ws_base = _fast_path()
    version = getattr(uvicorn, "__version__", "unknown")
    if not version.startswith(SUPPORTED_UVICORN):
        raise ServerStartError(f"uvicorn {version} is not the version the HTTPS listener was written against "
                               f"({SUPPORTED_UVICORN}x); its protocol overrides (web/server.py) must be reviewed first")
    classes = {"HttpToolsProtocol": http_base, "WebSocketsSansIOProtocol": ws_base, "Server": uvicorn.Server}
    missing = [f"{name}.{attr}" for name, attrs in _RELIED_ON.items() for attr in attrs
               if not callable(getattr(classes[name], attr, None))]
    if missing:
        raise ServerStartError(f"uvicorn {version} lacks what the HTTPS listener overrides: {', '.join(missing)}")
    return _protocols(http_base, ws_base)


@functools.cache
def _protocols(http_base: type, ws_base: type) -> tuple[type, type]:
    import httptools

    http = type("GuardedHttpToolsProtocol", (_GuardedHttp, http_base),
                {"_ParserError": httptools.HttpParserError, "_ParserUpgrade": httptools.HttpParserUpgrade})
    ws = type("GuardedWebSocketsSansIOProtocol", (_GuardedWebSocket, ws_base), {})
    return http, ws


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

        self.servers = [Listener(sock, self.gate, self.ssl_context, make_http).start()  # type: ignore[list-item]
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
    import uvloop

    loop = asyncio.get_running_loop()
    if not isinstance(loop, uvloop.Loop):
        raise ServerStartError("serve() must run on a uvloop event loop (use uvloop.run); refusing the slower asyncio loop")
    limits = limits or Limits.from_config(WebConfig())
    cap = connection_cap(limits)
    if cap is None:
        raise ServerStartError("the open-file limit leaves no room for connections; raise it "
                               "(systemd: LimitNOFILE=) to at least 1024")
    gate = Gate(limits, cap=cap, allow=allow, trusted_proxies=list(trusted_proxies))

    sock = bind_socket(host, port)
    signals: list[signal.Signals] = []
    try:
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
            # Only used by uvicorn.run(); here the loop is the caller's, checked above.
            loop="uvloop",
            backlog=BACKLOG,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
        )
        config.load()  # config.ssl stays None: the front door starts TLS itself, with a handshake deadline
        server = _Server(config, on_started, gate, ssl_context)
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

