"""Typed failures of the devices capability; messages are safe to show (never a secret)."""

from __future__ import annotations

from appliance.errors import ConflictError, NotFoundError, OutpostError


class DeviceNotFoundError(NotFoundError):
    code = "device_not_found"

    def __init__(self) -> None:
        super().__init__("No such device.")


class CredentialNotFoundError(NotFoundError):
    code = "credential_not_found"

    def __init__(self) -> None:
        super().__init__("No such credential.")


class CredentialInUseError(ConflictError):
    code = "credential_in_use"


class HostKeyRefusedError(OutpostError):
    """A pin was refused: the key does not match the pinned key or the preset fingerprint."""

    code = "host_key_refused"
    status = 409


class StaleReviewError(ConflictError):
    code = "host_key_review_stale"

    def __init__(self) -> None:
        super().__init__("The device presented a different key since this page was loaded; review it again.")


class BindingStaleError(ConflictError):
    code = "credential_binding_stale"

    def __init__(self) -> None:
        super().__init__("The device's address, port or credential changed since this page was loaded; "
                         "review it again.")
