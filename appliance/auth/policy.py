"""Password and username rules with plain-words messages (AUTH-3).

Rules: minimum length (policy, at least 8), at most 1024 characters (never
truncated), optional composition (lower, upper, digit, symbol), no common
password, no context word (product name, username, appliance hostname), no reuse
of the last N passwords (checked by the service against argon2 hashes).

The blocklist is zxcvbn's bundled ranked list (30 000 common passwords, offline).
A password is refused if any of its normalised forms is on the list: lower-cased,
with simple leetspeak undone, with trailing digits/symbols stripped, and a short
pattern repeated (`Password1!Password1!` is "password" twice).
"""

from __future__ import annotations

import functools
import re

MAX_PASSWORD = 1024  # far above the 128 the spec requires; bounds hashing input
MIN_FLOOR = 8
PRODUCT = "outpost"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_LEET = str.maketrans({"0": "o", "1": "i", "!": "i", "|": "i", "3": "e", "4": "a", "@": "a", "5": "s", "$": "s",
                       "7": "t", "+": "t", "8": "b", "9": "g", "2": "z", "6": "g"})
_EDGE = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_CONTEXT_MIN = 3  # shorter context words (e.g. a 2-letter username) would refuse too much


def check_username(username: str) -> str | None:
    """A problem with username in plain words, or None."""
    if not _USERNAME.match(username):
        return "Use 1 to 64 letters, digits, dots, dashes, underscores or @, starting with a letter or digit."
    return None


@functools.cache
def _blocklist() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # data only; loaded once, on first use

    return frozenset(w.lower() for w in FREQUENCY_LISTS["passwords"])


def _unrepeat(text: str) -> str:
    """"abcabcabc" -> "abc": the shortest unit the text is made of, or text itself."""
    n = len(text)
    for size in range(1, n // 2 + 1):
        if n % size == 0 and text[:size] * (n // size) == text:
            return text[:size]
    return text


def normalised_forms(password: str) -> set[str]:
    """The forms checked against the blocklist (see module docstring)."""
    lower = password.lower()
    forms = {lower, lower.translate(_LEET)}
    for form in list(forms):
        unit = _unrepeat(form)
        forms |= {unit, _EDGE.sub("", form), _EDGE.sub("", unit)}
    # a digit/symbol suffix is stripped *before* undoing leetspeak too ("Password1!")
    stripped = _EDGE.sub("", lower)
    forms |= {stripped, stripped.translate(_LEET), _unrepeat(_EDGE.sub("", _unrepeat(lower)))}
    return {f for f in forms if f}


def is_common(password: str) -> bool:
    """True if the password, or an obvious variation of it, is a common password."""
    if len(password) > 64:  # long passphrases: list entries are short; only the whole-repeat check matters
        unit = _unrepeat(password.lower())
        return unit != password.lower() and is_common(unit)
    words = _blocklist()
    return any(form in words for form in normalised_forms(password))


def context_words(username: str, hostname: str = "") -> list[str]:
    words = [PRODUCT]
    for word in (username, hostname.split(".")[0] if hostname else ""):
        if len(word) >= _CONTEXT_MIN:
            words.append(word.lower())
    return words


def check_password(password: str, *, username: str, min_length: int, require_composition: bool = False,
                   hostname: str = "") -> list[str]:
    """Every rule the password breaks, in plain words (empty list: acceptable).

    Reuse of earlier passwords is checked by the service (it needs the hashes)."""
    problems = []
    if len(password) < max(min_length, MIN_FLOOR):
        problems.append(f"Use at least {max(min_length, MIN_FLOOR)} characters "
                        "(a passphrase of several words is easiest).")
    if len(password) > MAX_PASSWORD:
        problems.append(f"Use at most {MAX_PASSWORD} characters.")
        return problems
    if require_composition:
        missing = [name for name, pattern in (("a lower-case letter", r"[a-z]"), ("an upper-case letter", r"[A-Z]"),
                                              ("a digit", r"\d"), ("a symbol", r"[^A-Za-z0-9]"))
                   if not re.search(pattern, password)]
        if missing:
            problems.append("Include " + ", ".join(missing) + ".")
    lowered = password.lower()
    deleeted = lowered.translate(_LEET)
    for word in context_words(username, hostname):
        if word in lowered or word in deleeted:
            what = ("the product name" if word == PRODUCT else "the username" if word == username.lower()
                    else "the appliance's name")
            problems.append(f"Do not include {what} in the password.")
    if password and len(set(lowered)) < 5:
        problems.append("Use more different characters; long runs of the same few characters are easy to guess.")
    elif is_common(password):
        problems.append("This is a commonly used password (or a simple variation of one); "
                        "choose something less guessable.")
    return problems
