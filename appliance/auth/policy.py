"""Password and username rules with plain-words messages (AUTH-3, foundation subset).

The full policy (blocklist, composition, history) builds on `check_password`.
"""

from __future__ import annotations

import re

MAX_PASSWORD = 1024  # far above the 128 the spec requires; bounds hashing input
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def check_username(username: str) -> str | None:
    """A problem with username in plain words, or None."""
    if not _USERNAME.match(username):
        return "Use 1 to 64 letters, digits, dots, dashes, underscores or @, starting with a letter or digit."
    return None


def check_password(password: str, *, username: str, min_length: int) -> list[str]:
    """Every rule the password breaks, in plain words (empty list: acceptable)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"Use at least {min_length} characters (a passphrase of several words is easiest).")
    if len(password) > MAX_PASSWORD:
        problems.append(f"Use at most {MAX_PASSWORD} characters.")
    if username and username.lower() in password.lower():
        problems.append("Do not include the username in the password.")
    if "outpost" in password.lower():
        problems.append("Do not include the product name in the password.")
    return problems
