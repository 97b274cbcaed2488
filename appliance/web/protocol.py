"""uvicorn's HTTP and WebSocket protocols with the front door's request rules, and the check that
uvicorn is the version they were written against (issue 11, findings 1, 2, 13; issue 12 point 7).

Why this module exists: `web/server.py` runs uvicorn; this module holds what overrides uvicorn's
internals, so the one place that subclasses framework classes is small and reviewed as a unit.

Invariants:
- The fast path is asserted, not hoped for: uvloop as the running loop and httptools as the HTTP
  parser (uvicorn would otherwise fall back to asyncio + h11, ~45 % slower). Protocol classes are
  imported here by name, not by uvicorn from strings, which also keeps the frozen build honest.
- Overriding uvicorn internals is explicit and version-checked: `check_framework()` (called by
  `server.serve()` before anything is bound) refuses a uvicorn other than SUPPORTED_UVICORN or one
  lacking a method we override or call (_RELIED_ON).
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

import uvicorn

from appliance.errors import OutpostError
from appliance.web.connlimits import HeadBudget, HeadRefused, Limits, Slot
from appliance.web.security import raw_refusal

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpBase
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol as _WsBase
else:  # the real bases are mixed in by _protocols(), after _fast_path() has checked they exist
    _HttpBase = _WsBase = object

SUPPORTED_UVICORN = "0.54."  # the version whose protocol internals _GuardedHttp was written against


class ServerStartError(OutpostError):
    """The HTTPS listener could not start; the message says why in plain words."""

    code = "server_start_failed"
    status = 500


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


# What _GuardedHttp/_GuardedWebSocket here and server._Server override or call on uvicorn's classes;
# a uvicorn without one is refused.
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
                               f"({SUPPORTED_UVICORN}x); its overrides (web/protocol.py, web/server.py) "
                               "must be reviewed first")
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
