"""Where a `next` parameter may send the browser (issue 11, findings 13 and 14).

One rule for every `next` the UI reads (today /reauth; step-up redirects build theirs with
it too): a same-origin absolute path and nothing else. Browsers "repair" odd URLs before
following them (a tab or newline is dropped, a backslash becomes a slash, `//host` is
another origin), so anything that could be repaired into another origin is refused, not
cleaned up. A refused value falls back to a fixed page; the request still succeeds.
"""

from __future__ import annotations

MAX_NEXT = 512


def safe_next(value: str | None, default: str = "/dashboard") -> str:
    """`value` if it is a same-origin absolute path, else `default`.

    Accepted: starts with exactly one "/", then printable ASCII only (no space, control
    character, DEL or non-ASCII anywhere), no backslash, at most MAX_NEXT characters.
    Percent-escapes stay as they are: they are not decoded, so they cannot smuggle any of
    the above into the Location header."""
    if not value or len(value) > MAX_NEXT or value[0] != "/" or value[1:2] in ("/", "\\"):
        return default
    if "\\" in value or not all("!" <= ch <= "~" for ch in value):
        return default
    return value
