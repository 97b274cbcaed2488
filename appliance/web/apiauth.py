"""The API gate: bearer API keys for /api/ and /metrics (ACL-2, ACL-4, API-1).

Called by SecurityMiddleware after the IP allow list, Host and body-size checks.
Invariants (what must never happen):
- An /api/ or /metrics request is never authenticated by the session cookie, a
  query-string parameter or a form field: only `Authorization: Bearer op_...`.
- A presented key that is malformed, unknown, revoked or expired gets 401 in the one
  error shape, is audited (public id and reason only), and counts against the
  source's failure budget; past the budget a bad key gets 429 (not audited again).
- A valid key is never refused for its address's failures: the budget throttles
  failures, not the address (keys are checked first, in constant time).
- A state-changing request carries JSON or no body at all; anything else gets 415.
- Every state-changing request made with a key is audited (api.write) with the
  key's public id, the method and path: in the transaction of the first change it makes,
  before the response (so a crash cannot keep the change and lose the record); a request
  that changes nothing or fails is recorded after its response, with the status.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from appliance.access.apikeys import _MESSAGES, InvalidApiKeyError
from appliance.audit import apiwrite
from appliance.audit.apiwrite import ApiWrite
from appliance.audit.events import Event
from appliance.web.security import CLIENT, PRINCIPAL

if TYPE_CHECKING:
    from appliance.clock import Clock

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_WWW_AUTH = [(b"www-authenticate", b'Bearer realm="outpost"')]
_MAX_SOURCES = 10_000


def covers_path(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


class FailureBudget:
    """Failed key authentications per source in a sliding window; bounded memory."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, source: str) -> deque[float] | None:
        hits = self._hits.get(source)
        if hits is not None:
            cutoff = self.clock.monotonic() - self.window
            while hits and hits[0] <= cutoff:
                hits.popleft()
        return hits

    def exhausted(self, source: str) -> bool:
        hits = self._recent(source)
        return hits is not None and len(hits) >= self.limit

    def retry_after(self, source: str) -> int:
        hits = self._recent(source)
        return max(1, int(hits[0] + self.window - self.clock.monotonic()) + 1) if hits else 1

    def fail(self, source: str) -> None:
        hits = self._hits.setdefault(source, deque())
        hits.append(self.clock.monotonic())
        self._hits.move_to_end(source)
        while len(self._hits) > _MAX_SOURCES:
            self._hits.popitem(last=False)


def _json_body_ok(headers: dict) -> bool:
    ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if ctype:
        return ctype == b"application/json" or ctype.endswith(b"+json")
    length = headers.get(b"content-length")
    return (length is None or length == b"0") and b"transfer-encoding" not in headers


class ApiGate:
    def __init__(self, services) -> None:
        self.services = services
        self.budget = FailureBudget(services.config.access.api_key_failures_per_minute, 60.0, services.clock)

    @staticmethod
    def covers(path: str) -> bool:
        return covers_path(path)

    async def __call__(self, app, scope, receive, send, headers: dict, reject) -> None:
        client = scope[CLIENT]
        method = scope.get("method", "GET")
        if method in UNSAFE and not _json_body_ok(headers):
            return await reject(send, 415, "unsupported_media_type",
                                "The API accepts JSON bodies only (Content-Type: application/json).")
        raw = headers.get(b"authorization")
        if raw is None and scope["path"] == "/metrics":
            # Not under /api/, so the error layer would redirect a browser to /login: answer 401 here.
            return await reject(send, 401, "invalid_api_key", _MESSAGES["missing"], {"reason": "missing"}, _WWW_AUTH)
        if raw is not None:
            scheme, _, token = raw.decode("latin-1").strip().partition(" ")
            try:
                if scheme.lower() != "bearer" or not token.strip():
                    raise InvalidApiKeyError("scheme")
                # Checked even from a throttled address (one HMAC and one indexed read, constant
                # time): the budget throttles failures only, so a valid key still works there.
                scope[PRINCIPAL] = await self.services.apikeys.authenticate(token.strip(), client)
            except InvalidApiKeyError as exc:
                if self.budget.exhausted(client):  # not audited one by one: the address is on record already
                    retry = self.budget.retry_after(client)
                    return await reject(send, 429, "rate_limited",
                                        "Too many failed API-key attempts from your address; wait and try again.",
                                        {"retry_after": retry}, [(b"retry-after", str(retry).encode())])
                self.budget.fail(client)
                named = exc.reason in ("unknown", "revoked", "expired", "disabled", "owner_role")
                key_id = token.strip()[3:15] if named else ""  # the public id only, never the secret
                await self.services.apikeys.record_failure(exc.reason, client, key_id)
                return await reject(send, 401, exc.code, exc.message, exc.details, _WWW_AUTH)
        if method not in UNSAFE or scope[PRINCIPAL] is None:
            return await app(scope, receive, send)
        await self._audited(app, scope, receive, send)

    async def _audited(self, app, scope, receive, send) -> None:
        """Run a write made with a key. Its api.write record commits with the first change the
        request makes, in that change's transaction, before any response (audit/apiwrite.py).
        A request that changed nothing, or failed, is recorded afterwards with its status."""
        status = 500

        async def capture(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        principal = scope[PRINCIPAL]
        pending = ApiWrite(actor=principal.actor(scope[CLIENT]),
                           target=f"apikey:{principal.key_id}", method=scope.get("method", ""), path=scope["path"])
        token = apiwrite.CURRENT.set(pending)
        try:
            await app(scope, receive, capture)
        finally:
            apiwrite.CURRENT.reset(token)
            if pending.seq is None or status >= 400:
                outcome = "success" if status < 400 else "denied" if status in (401, 403) else "failure"
                # Nothing of this request's was recorded in a change's transaction (refused, failed, no-op).
                await self.services.audit.record_alone(Event.API_WRITE, actor=pending.actor, outcome=outcome,
                                                       target=pending.target, details=pending.details(status))
