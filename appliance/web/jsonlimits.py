"""A nesting limit for JSON request bodies (ACL-4, API-1; issue 11 finding 20).

msgspec (and Litestar's conversion after it) recurse once per nesting level, so a body
of 1,000 `[` reached Python's recursion limit and answered 500. No API body needs more
than a few levels, so every JSON body a handler is about to decode is measured first,
and one nested deeper than MAX_DEPTH gets 400 `json_too_deep` without being decoded.

The measure is a few linear passes at C speed, with no regex and no backtracking: escape
pairs are dropped (so an escaped quote cannot end a string early), the text is split at the
quotes and only what lies outside strings is kept, everything but brackets is deleted, and
the running depth (the running sum of +1 / -1) stops at the first level past the limit.
A 1 MiB body of brackets costs well under a tenth of a second. Malformed JSON is left to
the decoder, which answers 400.
"""

from __future__ import annotations

from itertools import accumulate

from litestar import Request
from litestar.enums import RequestEncodingType

from appliance.errors import ValidationError

MAX_DEPTH = 32

_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes(1 if b in b"[{" else 255 for b in range(256))  # +1 / -1 as signed bytes; only brackets are left


class JsonTooDeepError(ValidationError):
    code = "json_too_deep"


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects in a JSON text nest deeper than `limit` (brackets in strings not counted)."""
    if body.count(b"[") + body.count(b"{") <= limit:  # the usual small body: nothing more to do
        return False
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")  # pairs left to right, as a JSON decoder reads them
    outside_strings = b"".join(body.split(b'"')[::2])  # an unterminated string runs to the end
    steps = memoryview(outside_strings.translate(None, _NOT_BRACKET).translate(_STEP)).cast("b")
    return next(filter(limit.__lt__, accumulate(steps)), None) is not None


def _decodes_json(request: Request) -> bool:
    data = request.route_handler.parsed_data_field
    if data is None:
        return False
    media_type = getattr(data.kwarg_definition, "media_type", RequestEncodingType.JSON)
    return media_type == RequestEncodingType.JSON


async def refuse_deep_json(request: Request) -> None:
    """Litestar `before_request` hook: runs before the handler's arguments are decoded.
    The body read here is cached on the connection, so the decoder reuses it."""
    if not _decodes_json(request):
        return
    if too_deep(await request.body()):
        raise JsonTooDeepError(f"The JSON body is nested too deeply: at most {MAX_DEPTH} levels of arrays and "
                               "objects are allowed.", details={"max_depth": MAX_DEPTH})
