"""Devices, credentials and host-key pins (no I/O).

`DeviceSecret` is the only record that carries secret material: it is built by
`DeviceService` from the vault for the probe and is never serialised to any
response, log line, exception or audit record. Everything shown to users
(`Credential`, `Device`) says only whether a secret is set, its type and, for
keys, the key type and SHA256 fingerprint.
"""

from __future__ import annotations

from typing import Literal

import msgspec

HostKeyStatus = Literal["unpinned", "pinned", "mismatch"]
PinMode = Literal["tofu", "preset", "review"]
CredentialKind = Literal["password", "key"]
BindingStatus = Literal["approved", "pending"]


class DeviceSecret(msgspec.Struct, frozen=True, kw_only=True):
    """What the probe needs to log in. Never serialised to any response or log."""

    username: str
    password: str | None = None
    private_key: str | None = None  # OpenSSH or PEM text
    passphrase: str | None = None

    def __repr__(self) -> str:  # a stray log line or traceback shows no secret
        return f"DeviceSecret(username={self.username!r}, secret=<hidden>)"

    __str__ = __repr__


class ProbeTarget(msgspec.Struct, frozen=True, kw_only=True):
    """One enabled device as the probe sees it, secrets opened from the vault.

    Host keys: `host_key` is the pinned OpenSSH public key line (None = not pinned
    yet). When it is None and `preset_fingerprint` is set, only a key with that
    SHA256 fingerprint may be accepted (pin it with mode "preset"); when both are
    None the first key seen is pinned (mode "tofu"). `check_host_key()` says which.
    """

    device_id: int
    name: str
    address: str
    port: int
    poll_interval: int
    enabled: bool
    legacy_algorithms: bool
    host_key: str | None
    host_key_status: HostKeyStatus
    credential: DeviceSecret | None
    preset_fingerprint: str | None = None  # "SHA256:..." entered by an operator, or None
    # The credential binding awaits an admin's approval: `credential` is then None (never opened
    # from the vault), so nothing secret can reach this address; reachability only.
    binding_pending: bool = False

    def __repr__(self) -> str:
        return (f"ProbeTarget(device_id={self.device_id}, name={self.name!r}, address={self.address!r}, "
                f"port={self.port}, host_key_status={self.host_key_status!r})")

    def check_host_key(self, presented_key_line: str) -> Literal["match", "tofu", "preset", "mismatch"]:
        """What to do with the key a device presented, before any authentication.

        "match": pinned key equals it; "tofu"/"preset": pin it with that mode, then go on;
        "mismatch": do not authenticate, call `record_host_key_mismatch`."""
        from appliance.crypto.sshkeys import fingerprint_of_key_line, same_public_key

        if self.host_key is not None:
            return "match" if same_public_key(self.host_key, presented_key_line) else "mismatch"
        if self.preset_fingerprint is not None:
            try:
                fp = fingerprint_of_key_line(presented_key_line)
            except ValueError:
                return "mismatch"
            return "preset" if fp == self.preset_fingerprint else "mismatch"
        return "tofu"


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """A stored credential as users see it: never the secret itself."""

    id: int
    name: str
    username: str
    kind: CredentialKind
    key_type: str  # "" for passwords; "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa" ...
    key_bits: int
    fingerprint: str  # "SHA256:..." of the public half of a key; "" for passwords
    has_passphrase: bool
    device_count: int
    entered_by: str  # "user:<name>" / "system:system" who entered the secret; "" unknown (devices/binding.py)
    created_at: float
    updated_at: float


class CredentialInput(msgspec.Struct, frozen=True, kw_only=True):
    """A new credential or a replacement secret (validated by the service)."""

    name: str
    username: str
    kind: CredentialKind
    password: str | None = None
    private_key: str | None = None
    passphrase: str | None = None

    def __repr__(self) -> str:
        return f"CredentialInput(name={self.name!r}, username={self.username!r}, kind={self.kind!r})"

    __str__ = __repr__


class Device(msgspec.Struct, frozen=True, kw_only=True):
    """A device in the inventory, as users see it."""

    id: int
    name: str
    address: str
    port: int
    tags: list[str]
    poll_interval: int
    enabled: bool
    notes: str
    legacy_algorithms: bool
    credential_id: int | None
    credential_name: str | None
    host_key: str | None
    host_key_fingerprint: str | None
    host_key_status: HostKeyStatus
    pinned_at: float | None
    pin_mode: str | None
    preset_fingerprint: str | None
    presented_key: str | None
    presented_fingerprint: str | None
    mismatch_at: float | None
    created_at: float
    updated_at: float
    # credential binding (devices/binding.py): "pending" = nothing secret is sent until an admin approves
    binding_status: BindingStatus = "approved"
    binding_requested_by: str | None = None
    binding_requested_at: float | None = None
    binding_approved_by: str | None = None
    binding_approved_at: float | None = None


class DeviceInput(msgspec.Struct, frozen=True, kw_only=True):
    """Fields an operator sets on create or edit (already normalised by validate.py)."""

    name: str
    address: str
    port: int = 22
    tags: list[str] = []
    poll_interval: int = 60
    enabled: bool = True
    notes: str = ""
    legacy_algorithms: bool = False
    credential_id: int | None = None
    preset_fingerprint: str | None = None  # SHA256 fingerprint, or None
    preset_key: str | None = None  # a full public key line: pinned directly (mode "preset")


class ImportRowError(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    errors: dict[str, str]


class ImportResult(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of a CSV import: all rows imported, or none and the reasons per row."""

    ok: bool
    rows: int
    imported: int
    errors: list[ImportRowError]
    message: str = ""
