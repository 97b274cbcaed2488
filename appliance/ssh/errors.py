"""SSH failure modes, one class each, so the probe can map them to a device status.

Messages are safe to show: they never contain credentials, keys or device output.
"""

from __future__ import annotations

from appliance.errors import OutpostError


class SSHError(OutpostError):
    code = "ssh_error"
    status = 502


class InvalidKeyError(SSHError):
    """A key text is unusable: unparseable, wrong passphrase, or RSA under 2048 bits."""

    code = "ssh_key_invalid"
    status = 400


class UnreachableError(SSHError):
    """No TCP connection (refused, no route, timed out)."""

    code = "ssh_unreachable"


class TargetRefusedError(UnreachableError):
    """The probe target policy refuses the resolved address: no connection was opened."""

    code = "ssh_target_refused"
    status = 403


class HandshakeError(SSHError):
    """TCP worked but SSH did not: silence, garbage, reset, no common algorithm."""

    code = "ssh_handshake"


class HostKeyMismatchError(SSHError):
    """The device presented a key other than the pinned one; nothing was authenticated."""

    code = "ssh_host_key_changed"

    def __init__(self, presented: str) -> None:
        super().__init__("The device presented a different host key; login refused before authentication.")
        self.presented = presented


class AuthFailedError(SSHError):
    """The device refused the credential. `presented` is the host key it proved (for first-contact pinning)."""

    code = "ssh_auth_failed"

    def __init__(self, message: str, presented: str | None = None) -> None:
        super().__init__(message)
        self.presented = presented


class BindingPendingError(SSHError):
    """The device's credential binding awaits an admin's approval: nothing secret may be sent yet."""

    code = "credential_binding_pending"
    status = 409


class CommandError(SSHError):
    """A command could not be run or the connection dropped while it ran."""

    code = "ssh_command"


class CommandTimeoutError(CommandError):
    code = "ssh_command_timeout"
