"""Operator regular expressions (custom checks, PROBE-2) matched on device output without ReDoS.

Python's `re` backtracks: `^(a+)+$` against 'a'*25 + '!' takes 2^25 steps and, on the
event loop, stalled every request for seconds on every poll (issue 11, finding 3), and
the device chooses the text. So patterns run on RE2 (google-re2): no backtracking, time
linear in the text. RE2 has no backreferences or lookaround; such patterns are refused
when the check is created, with a message saying which feature is missing.

Linear is not free: a match costs about (program size x text length), measured at
10-40 ns per instruction per byte here, so `(.*a){200}` on 1 MiB still took 18 s. Hence:
patterns of at most MAX_PATTERN characters compiling to at most MAX_PROGRAM instructions,
matched against the first MAX_TEXT characters of output (about a second at worst), in one
dedicated thread (RE2 releases the GIL) so the event loop never waits for a match.
"""

from __future__ import annotations

import asyncio
import functools
import re
from concurrent.futures import ThreadPoolExecutor

import re2

MAX_PATTERN = 256
MAX_PROGRAM = 400
MAX_TEXT = 64 * 1024
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outpost-regex")
# Only to name the feature in a refusal message (run on the <= 256-character pattern, never on output).
_BACKREF = re.compile(r"\\[1-9]|\(\?P=")
_LOOKAROUND = re.compile(r"\(\?<?[=!]")


class PatternError(ValueError):
    """A pattern the matcher refuses; the message is meant for the operator."""


def _options():
    options = re2.Options()
    options.log_errors = False  # RE2 would print the pattern to stderr, outside the JSON logs
    options.max_mem = 8 << 20  # bounds the compiled program and DFA cache per pattern
    return options


def _explain(pattern: str, error: Exception) -> str:
    """Why RE2 refused a pattern, naming the unsupported feature when it is a known one."""
    raw = error.args[0] if error.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if _BACKREF.search(pattern):
        return "Backreferences (\\1, (?P=name)) are not supported: the matcher must run in linear time."
    if _LOOKAROUND.search(pattern):
        return "Lookahead and lookbehind ((?=, (?!, (?<=, (?<!) are not supported: the matcher must run in linear time."
    if "bad repetition operator: " in text and text.rstrip()[-1:] == "+":
        return "Possessive quantifiers (++, *+, ?+) are not supported."
    return f"Not a valid regular expression ({text or 'RE2 refused it'})."


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str):
    """The compiled pattern, or PatternError with a plain-words reason."""
    if len(pattern) > MAX_PATTERN:
        raise PatternError(f"A pattern may be at most {MAX_PATTERN} characters.")
    if "\x00" in pattern:
        raise PatternError("A pattern may not contain NUL.")
    try:
        compiled = re2.compile(pattern, _options())
    except re2.error as exc:
        raise PatternError(_explain(pattern, exc)) from None
    if compiled.programsize > MAX_PROGRAM:
        raise PatternError(f"This pattern is too complex (its program has {compiled.programsize} steps, "
                           f"at most {MAX_PROGRAM} are allowed); simplify it, e.g. use fewer or smaller repetitions.")
    return compiled


def refusal(pattern: str) -> str | None:
    """None if the pattern is usable, else the reason (for the check form)."""
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        return str(exc)
    return None


async def search(pattern: str, text: str) -> bool:
    """True if the pattern matches somewhere in the first MAX_TEXT characters; PatternError if refused."""
    compiled = compile_pattern(pattern)
    sample = text[:MAX_TEXT]
    return await asyncio.get_running_loop().run_in_executor(_POOL, lambda: compiled.search(sample) is not None)
