"""Exception handlers: one JSON error shape for the API, friendly pages for browsers.

Invariants: unexpected exceptions produce a generic 500 with no stack trace, path
details or secrets in the response; the exception is logged by type only.
"""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

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


def http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500:
        return server_error(request, exc)
    message = _HTTP_MESSAGES.get(status, "The request was refused.")
    details = {}
    if status == 400 and isinstance(exc.extra, list):  # msgspec/litestar validation: field names only
        details = {"fields": [str(e.get("key", "")) for e in exc.extra if isinstance(e, dict)]}
    return error_response(request, status, "http_%d" % status, message, details)


def server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", extra={"error_type": type(exc).__name__, "path": request.url.path})
    return error_response(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal_error",
                          "Something went wrong on the appliance; the error has been logged.")


HANDLERS = {OutpostError: outpost_error, HTTPException: http_error, Exception: server_error}
