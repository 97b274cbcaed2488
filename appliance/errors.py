"""Error base classes.

Every error the appliance raises on purpose derives from `OutpostError` and carries
a stable `code` and a message that is safe to show to a user: it never contains a
password, key, token or other secret. Capabilities subclass these per failure mode.
"""

from __future__ import annotations


class OutpostError(Exception):
    """An expected failure with a user-safe message."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ConfigError(OutpostError):
    """The configuration file is missing, unreadable or invalid; message names the key path."""

    code = "config_invalid"


class NotFoundError(OutpostError):
    code = "not_found"
    status = 404


class PermissionDeniedError(OutpostError):
    code = "forbidden"
    status = 403


class ValidationError(OutpostError):
    """Bad user input; `details` maps field names to plain-words problems."""

    code = "invalid_input"
    status = 400


class ConflictError(OutpostError):
    code = "conflict"
    status = 409


class RateLimitedError(OutpostError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int = 60) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after
