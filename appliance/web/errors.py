"""Exception handlers: one JSON error shape for the API, friendly pages for browsers.

Invariants: unexpected exceptions produce a generic 500 with no stack trace, path
details or secrets in the response; the exception is logged by type only.
"""

from __future__ import annotations

import logging
import re

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from appliance.errors import OutpostError, RateLimitedError
from appliance.web.guards import NotAuthenticatedError
from appliance.web.render import render

log = logging.getLogger("outpost.web")

_HTTP_MESSAGES = {
    400: "The request could not be understood.",
    404: "There is nothing here.",
    405: "This method is not allowed here.",
    413: "The request body is too large.",
    415: "Unsupported content type.",
}


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def error_response(request: Request, status: int, code: str, message: str, details: dict | None = None,
                   headers: dict | None = None) -> Response:
    if wants_json(request) or request.headers.get("hx-request"):
        return Response({"error": {"code": code, "message": message, "details": details or {}}},
                        status_code=status, media_type=MediaType.JSON, headers=headers)
    response = render(request.app.state.templates, request, "error.html", status=status, message=message)
    if headers:
        response.headers.update(headers)
    return response


def outpost_error(request: Request, exc: OutpostError) -> Response:
    if isinstance(exc, NotAuthenticatedError) and not wants_json(request):
        if request.headers.get("hx-request"):
            return Response(b"", status_code=401, headers={"HX-Redirect": "/login"})
        return Response(b"", status_code=303, headers={"Location": "/login"})
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimitedError) else None
    return error_response(request, exc.status, exc.code, exc.message, exc.details, headers)


# msgspec names an unknown or missing field in its message, and Litestar's key is then only
# the object holding it ("data" for the body itself).
_NAMED_FIELD = re.compile(r"^Object (contains unknown|missing required) field `([^`]{1,64})`")
_QUOTED_VALUE = re.compile(r" '.*'$")  # msgspec quotes the offending value: never echo input back


def _field_problem(error: dict) -> tuple[str, str]:
    """(field path, plain-words problem) for one Litestar validation error."""
    key = str(error.get("key", ""))[:100]
    text = str(error.get("message", ""))
    named = _NAMED_FIELD.match(text)
    if named is None:
        return key or "body", _QUOTED_VALUE.sub("", text)[:200]
    field = named.group(2) if key in ("", "data") else f"{key}.{named.group(2)}"
    return field, "unknown field" if named.group(1) == "contains unknown" else "required field is missing"


def http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500:
        return server_error(request, exc)
    if isinstance(exc.__cause__, SerializationException):  # the decoder's reason never quotes the input
        return error_response(request, 400, "http_400", "The request body is not valid JSON.",
                              {"reason": str(exc.detail)[:200]})
    message = _HTTP_MESSAGES.get(status, "The request was refused.")
    details: dict = {}
    if status == 400 and isinstance(exc.extra, list):  # msgspec/litestar validation: name each field
        problems = dict(_field_problem(e) for e in exc.extra[:20] if isinstance(e, dict))
        details = {"fields": list(problems), "problems": problems}
        if problems:
            message = "Invalid input: " + "; ".join(f"{f} ({p})" for f, p in problems.items()) + "."
    return error_response(request, status, f"http_{status}", message, details)


def server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", extra={"error_type": type(exc).__name__, "path": request.url.path})
    return error_response(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal_error",
                          "Something went wrong on the appliance; the error has been logged.")


HANDLERS: ExceptionHandlersMap = {OutpostError: outpost_error, HTTPException: http_error, Exception: server_error}
