"""/api/v1/openapi.json and /api/v1/docs (API-1): the API described from its own routes.

The document is generated once, lazily, by a private Litestar app holding only the
/api/v1 route handlers (the served app keeps OpenAPI off, so no schema UI or CDN
asset is ever served). `create_examples=False`: polyfactory/faker are never needed
at run time. Errors are documented in the one shape (ErrorBody) on every operation.
The docs page is server-rendered HTML from the same document: no script, no CDN.
"""

from __future__ import annotations

from functools import lru_cache

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.openapi import OpenAPIConfig

from appliance import __version__
from appliance.web.api.common import MAX_ID, ErrorBody
from appliance.web.guards import public
from appliance.web.render import render

ERRORS = {
    "400": "Invalid input: the details name each field and what is wrong with it.",
    "401": "No API key, or a malformed, unknown, revoked or expired one.",
    "403": "The key's role lacks the permission, the caller's address is not allowed, or a step-up is needed.",
    "404": "No such object (or one you may not see).",
    "409": "Conflicts with the current state (e.g. the last admin, a limit reached).",
    "413": "The request body is too large.",
    "415": "The API accepts JSON bodies only.",
    "429": "Too many attempts from your address; see Retry-After.",
}
METHODS = ("get", "post", "put", "patch", "delete")


def _error_schema() -> tuple[dict, dict]:
    (ref,), components = msgspec.json.schema_components([ErrorBody], ref_template="#/components/schemas/{name}")
    return ref, components


def _exact_bounds(node) -> None:
    """Litestar writes Parameter bounds as floats, and float(2**63 - 1) is 2**63: a client trusting
    the document would send an id the API refuses. Write integral bounds back as integers, within
    the SQLite INTEGER range that every id lives in."""
    if isinstance(node, dict):
        for key in ("minimum", "maximum"):
            value = node.get(key)
            if isinstance(value, float) and value.is_integer():
                node[key] = max(-MAX_ID - 1, min(int(value), MAX_ID))
        for child in node.values():
            _exact_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _exact_bounds(child)


def build(route_handlers: list) -> dict:
    """The OpenAPI 3.1 document for the given /api/v1 handlers, errors in the one shape."""
    private = Litestar(route_handlers=route_handlers, openapi_config=OpenAPIConfig(
        title="Outpost API", version=__version__, create_examples=False, render_plugins=[],
        description="REST API of the Outpost appliance. Authenticate with `Authorization: Bearer op_<id>_<secret>` "
                    "(create keys on the API keys page). JSON only; errors are {\"error\": {code, message, details}}."),
        debug=False, logging_config=None)
    doc = private.openapi_schema.to_schema()
    _exact_bounds(doc)
    ref, components = _error_schema()
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(components)
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                       "description": "An Outpost API key: op_<id>_<secret>."}}
    doc["security"] = [{"bearer": []}]
    error_content = {"application/json": {"schema": ref}}
    for item in doc.get("paths", {}).values():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            responses.pop("400", None)  # Litestar's own ValidationException shape: ours differs
            for code, text in ERRORS.items():
                responses.setdefault(code, {"description": text, "content": error_content})
    doc["servers"] = [{"url": "/"}]
    return doc


@lru_cache(maxsize=1)
def _cached(handlers: tuple) -> bytes:
    return msgspec.json.encode(build(list(handlers)))


def document(request: Request) -> bytes:
    return _cached(tuple(request.app.state.api_routes))


@get("/api/v1/openapi.json", guards=[public], name="api_openapi", include_in_schema=False)
async def openapi_json(request: Request) -> Response:
    return Response(document(request), media_type="application/json")


def operations(doc: dict) -> list[dict]:
    """Flatten the document for the docs page, grouped by tag."""
    ops = []
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ok = {c: r for c, r in op.get("responses", {}).items() if c.startswith("2")}
            ops.append({
                "tag": (op.get("tags") or ["other"])[0], "method": method.upper(), "path": path,
                "summary": op.get("summary", ""), "description": op.get("description", ""),
                "parameters": [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                                "type": p.get("schema", {}).get("type", ""), "description": p.get("description", "")}
                               for p in op.get("parameters", [])],
                "body": body.get("$ref", "").rsplit("/", 1)[-1],
                "responses": {c: (r.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                                  .rsplit("/", 1)[-1] or r.get("description", "")) for c, r in ok.items()},
            })
    return sorted(ops, key=lambda o: (o["tag"], o["path"], o["method"]))


@get("/api/v1/docs", guards=[public], name="api_docs", include_in_schema=False)
async def docs(request: Request) -> Response:
    doc = msgspec.json.decode(document(request))
    schemas = doc.get("components", {}).get("schemas", {})
    return render(request.app.state.templates, request, "api/docs.html", ops=operations(doc), schemas=schemas,
                  errors=ERRORS, info=doc.get("info", {}))


ROUTES = [openapi_json, docs]
